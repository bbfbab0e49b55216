// The personalization picker of the delivery form: a button inserts its variable at the cursor of the
// content field last focused (HTML by default). A file of its own, no inline script: the pages get a CSP.
(function () {
  "use strict";
  var fields = document.querySelectorAll("[data-personalize='1']");
  if (!fields.length) { return; }
  var target = document.getElementById("id_html") || fields[0];

  fields.forEach(function (field) {
    field.addEventListener("focus", function () { target = field; });
  });

  document.querySelectorAll("button[data-insert]").forEach(function (button) {
    button.addEventListener("click", function () {
      var text = button.dataset.insert;
      var start = target.selectionStart, end = target.selectionEnd;
      if (typeof start !== "number") { start = end = target.value.length; }
      target.setRangeText(text, start, end, "end");
      target.dispatchEvent(new Event("input", { bubbles: true }));
      target.focus();
    });
  });
})();
