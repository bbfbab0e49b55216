// Live progress of deliveries being analyzed or sent: polls each one's progress and updates its bar and
// counters; when an analysis ends (ready, or back to draft with why) the page is loaded again, since
// what it offers changes.
(function () {
  "use strict";
  var POLL_MS = 3000;
  var LIVE_STATUSES = ["analyzing", "sending"];

  function update(bar, data) {
    var scope = bar.closest("[data-delivery]") || document;
    bar.querySelector(".progress-bar").value = Math.round(data.percent);
    ["processed", "to_deliver", "success", "errors", "analysis_progress"].forEach(function (name) {
      scope.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) { el.textContent = data[name]; });
    });
    scope.querySelectorAll('[data-field="expected_end"]').forEach(function (el) {
      el.textContent = data.expected_end || "not known yet";
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
        if (bar.dataset.status === "analyzing" && data.status !== "analyzing") {
          window.location.reload();
          return;
        }
        update(bar, data);
        if (LIVE_STATUSES.indexOf(data.status) >= 0) { setTimeout(function () { poll(bar); }, POLL_MS); }
      })
      .catch(function () { setTimeout(function () { poll(bar); }, POLL_MS * 3); });
  }

  document.querySelectorAll(".progress[data-live='1']").forEach(function (bar) {
    setTimeout(function () { poll(bar); }, POLL_MS);
  });
})();
