// The board refreshes itself: a long poll asks for the rows once the ledger moves past the version
// the page shows (the server holds the request up to 20 s, then answers 204 and we ask again).
// Without JavaScript the page reads the same; reload it to refresh.
(function () {
  var board = document.getElementById("board");
  if (!board || !window.fetch) return;
  function poll() {
    var url = board.getAttribute("data-rows");
    url += (url.indexOf("?") < 0 ? "?" : "&") + "wait=20&after=" + board.getAttribute("data-version");
    fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}}).then(function (r) {
      if (r.status === 204) return true;
      if (r.status === 401 || r.status === 403) return null;  // signed out: stop asking (reload to sign in)
      var version = r.headers.get("X-Board-Version");
      if (r.status !== 200 || r.redirected || !version) return false;  // signed out, or not the rows: back off
      return r.text().then(function (html) {
        board.innerHTML = html;
        board.setAttribute("data-version", version);
        board.dispatchEvent(new Event("board:updated"));
        return true;
      });
    }).catch(function () { return false; }).then(function (ok) { if (ok !== null) setTimeout(poll, ok ? 0 : 2000); });
  }
  poll();
})();
