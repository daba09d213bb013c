// Live updates for pages marked <main id="live" data-live="1">: every 1.5 s the page is
// fetched again and its <main> swapped in. Stops while the tab is hidden, while a form
// field has focus or runs are selected, and for good once the page says it is final.
(function () {
  "use strict";
  var main = document.getElementById("live");
  if (!main || !main.dataset.live) { return; }
  var timer = null;
  var busy = false;

  function interacting() {
    return main.querySelector("input[type=checkbox]:checked") !== null ||
      (document.activeElement !== null && main.contains(document.activeElement) &&
       /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName));
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
  }

  function tick() {
    if (document.hidden || busy || interacting()) { return; }
    busy = true;
    fetch(window.location.href, {
      headers: { "X-Live": "1" }, credentials: "same-origin", cache: "no-store"
    }).then(function (response) {
      if (!response.ok || response.redirected) { throw new Error(String(response.status)); }
      return response.text();
    }).then(function (html) {
      var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
      if (fresh && !interacting()) {
        main.innerHTML = fresh.innerHTML;
        main.dataset.live = fresh.dataset.live || "";
        document.body.dataset.updated = String(Date.now());
      }
      if (!main.dataset.live) { stop(); }
    }).catch(function () { /* keep the page as it is; try again on the next tick */ })
      .then(function () { busy = false; });
  }

  function start() {
    if (timer === null && main.dataset.live) { timer = setInterval(tick, 1500); }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else { tick(); start(); }
  });
  if (!document.hidden) { start(); }
})();
