// Shows whether the page is following the server's event stream. The swaps themselves are
// htmx's (sse extension); this only names the link's state for the people reading the page.
(function () {
  "use strict";
  function show(text, state) {
    var link = document.getElementById("link");
    if (link) {
      link.textContent = text;
      link.dataset.state = state;
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    show("connecting…", "connecting");
  });
  document.body.addEventListener("htmx:sseOpen", function () {
    show("live", "live");
  });
  document.body.addEventListener("htmx:sseError", function () {
    show("reconnecting… (the page shows what was last received)", "reconnecting");
  });
})();
