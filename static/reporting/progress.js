// Progress bars: drawn from their data-percent; those of deliveries being sent poll their progress and
// update the bar and counters.
(function () {
  "use strict";
  var POLL_MS = 3000;

  function update(bar, data) {
    var scope = bar.closest("[data-delivery]") || document;
    bar.querySelector(".progress-bar").style.width = data.percent + "%";
    ["processed", "to_deliver", "success", "errors"].forEach(function (name) {
      scope.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) { el.textContent = data[name]; });
    });
    scope.querySelectorAll('[data-field="status"]').forEach(function (el) {
      el.textContent = data.status_display;
      el.className = "status status-" + data.status;
    });
  }

  function poll(bar) {
    fetch(bar.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        update(bar, data);
        if (data.status === "sending") { setTimeout(function () { poll(bar); }, POLL_MS); }
      })
      .catch(function () { setTimeout(function () { poll(bar); }, POLL_MS * 3); });
  }

  // The width is set here, not in a style attribute, which the pages' Content-Security-Policy forbids.
  document.querySelectorAll(".progress-bar[data-percent]").forEach(function (fill) {
    fill.style.width = fill.dataset.percent + "%";
  });
  document.querySelectorAll(".progress[data-live='1']").forEach(function (bar) {
    setTimeout(function () { poll(bar); }, POLL_MS);
  });
})();
