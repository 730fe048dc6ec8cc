// Progressive enhancement only: show every time in the viewer's own zone (ISO 8601 with its offset) and
// remember the zone in a cookie so the next page is rendered in it by the server. Pages work without it.
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function local(d) {
    var off = -d.getTimezoneOffset(), sign = off >= 0 ? "+" : "-";
    off = Math.abs(off);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" + pad(d.getHours()) +
      ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + sign + pad(Math.floor(off / 60)) + ":" + pad(off % 60);
  }
  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { zone = ""; }
  if (zone && /^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) {
    document.cookie = "tz=" + zone + "; path=/ui/; SameSite=Strict; max-age=31536000";
    var el = document.getElementById("tzname");
    if (el) { el.textContent = zone; }
  }
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d.getTime())) { t.textContent = local(d); t.title = t.getAttribute("datetime"); }
  });
})();
