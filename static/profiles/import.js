// A list import's progress: polls its JSON progress while it runs and updates the bar and counters.
// Without JavaScript the page offers a refresh link instead.
(function () {
  "use strict";
  var POLL_MS = 2000;

  function update(section, data) {
    section.querySelector("progress").value = data.percent;
    section.querySelector("progress").textContent = data.percent + "%";
    ["processed", "created", "updated", "added_to_list", "rejected", "error"].forEach(function (name) {
      section.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) { el.textContent = data[name]; });
    });
    section.querySelectorAll('[data-field="total"]').forEach(function (el) { el.textContent = data.total === null ? "?" : data.total; });
    section.querySelectorAll('[data-field="status"]').forEach(function (el) {
      el.textContent = data.status_display;
      el.className = "status status-" + data.status;
    });
    if (data.done) {
      section.querySelector("[data-refresh]").hidden = true;
      section.querySelector("[data-when-done]").hidden = false;
    }
  }

  function poll(section) {
    fetch(section.dataset.progressUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        update(section, data);
        if (!data.done) { setTimeout(function () { poll(section); }, POLL_MS); }
      })
      .catch(function () { setTimeout(function () { poll(section); }, POLL_MS * 3); });
  }

  document.querySelectorAll(".import-progress[data-live='1']").forEach(function (section) {
    section.querySelector("[data-refresh]").hidden = true;
    setTimeout(function () { poll(section); }, POLL_MS);
  });
})();
