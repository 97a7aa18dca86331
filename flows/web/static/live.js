// Keeps "12m left" / "3m overdue" current without reloading (SOP time: wall time x the run's speed).
// The page reads fine without it: the server writes the text as of when it answered.
(function () {
  function fmt(seconds) {
    var s = Math.round(Math.abs(seconds)), out = "";
    [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]].forEach(function (u) {
      if (s >= u[1]) { out += Math.floor(s / u[1]) + u[0]; s %= u[1]; }
    });
    return out || "0s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var left = (Date.parse(el.getAttribute("data-due")) - now) / 1000 * parseFloat(el.getAttribute("data-speed") || "1");
      el.textContent = left >= 0 ? fmt(left) + " left" : fmt(left) + " overdue";
      el.className = left >= 0 ? "left" : "overdue";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 1000); });
})();
