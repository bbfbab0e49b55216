// A select marked data-autosubmit sends its form when it changes (the form keeps a button for no-JS use).
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
