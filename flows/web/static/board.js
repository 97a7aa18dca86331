// The board refreshes itself: once a second it asks for the rows if the ledger moved past the
// version it shows (204 when it did not). Without JavaScript the page reads the same; reload it.
(function () {
  var board = document.getElementById("board");
  if (!board || !window.fetch) return;
  var busy = false;
  function poll() {
    if (busy || document.hidden) return;
    busy = true;
    var url = board.getAttribute("data-rows");
    url += (url.indexOf("?") < 0 ? "?" : "&") + "after=" + board.getAttribute("data-version");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (r) {
      if (r.status !== 200) return null;
      var version = r.headers.get("X-Board-Version");
      return r.text().then(function (html) {
        board.innerHTML = html;
        if (version) board.setAttribute("data-version", version);
        board.dispatchEvent(new Event("board:updated"));
      });
    }).catch(function () {}).then(function () { busy = false; });
  }
  setInterval(poll, 1000);
})();
