// Scheduling in the marketer's own time zone: the browser's zone goes into the form's hidden field (the
// server reads the typed time in it, and stores UTC) and is shown beside the field; the times the page
// shows in UTC are shown in that zone as well. Without this script the server's zone is used and shown.
(function () {
  "use strict";
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (error) { zone = ""; }
  if (!zone) { return; }
  document.querySelectorAll("input[data-browser-timezone]").forEach(function (input) { input.value = zone; });
  document.querySelectorAll('[data-field="browser-timezone"]').forEach(function (el) { el.textContent = zone; });
  document.querySelectorAll("time[data-local-time]").forEach(function (el) {
    var at = new Date(el.getAttribute("datetime"));
    if (isNaN(at.getTime())) { return; }
    el.textContent = at.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }) + " (" + zone + ")";
  });
})();
