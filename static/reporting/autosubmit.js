// A filter's <select data-autosubmit> submits its form when changed (without JavaScript, the form's
// button does); here rather than in an onchange attribute, which a Content-Security-Policy forbids.
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
