{% autoescape off %}/* Beacon web tracking tag.
 *
 * On a landing page:  <script async src="{{ base_url }}/w/tag.js"></script>
 * It records the visit when the visitor came from a tracked email click. A transaction:
 *   window.beacon && window.beacon.transaction(49.90);
 * Nothing is recorded for browsers sending Global Privacy Control or Do Not Track, or opted out
 * at {{ base_url }}/w/opt-out.
 */
(function () {
  "use strict";
  var base = {{ base_url_json }};
  var dnt = navigator.globalPrivacyControl === true || navigator.doNotTrack === "1" || window.doNotTrack === "1";
  function send(amount) {
    if (dnt) { return; }
    var query = "url=" + encodeURIComponent(location.href);
    if (amount !== undefined && amount !== null) { query += "&amount=" + encodeURIComponent(String(amount)); }
    var image = new Image(1, 1);
    image.referrerPolicy = "no-referrer-when-downgrade";
    image.src = base + "/w/p.gif?" + query;
  }
  window.beacon = { transaction: send, page: function () { send(); } };
  send();
})();
{% endautoescape %}
