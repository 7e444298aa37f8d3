// A dashboard whose figures the worker is preparing (#filter-preparing): ask the page's
// ready.json every few seconds and show the figures (reload) once they are ready. If the
// reader has started changing the filters, do not throw their changes away: say the figures
// are ready, with a link. Without script, a <noscript> meta refresh reloads the page instead.
document.addEventListener("DOMContentLoaded", function () {
  var notice = document.getElementById("filter-preparing");
  if (!notice || !notice.dataset.readyUrl) { return; }
  var every = (parseInt(notice.dataset.pollSeconds, 10) || 2) * 1000;
  var longest = 30000; // a worker that is down: keep asking, ever less often
  var touched = false;
  var form = document.querySelector("form.outcome-filters");
  if (form) {
    form.addEventListener("input", function () { touched = true; });
    form.addEventListener("change", function () { touched = true; });
  }

  function showReady() {
    if (!touched) { window.location.reload(); return; }
    var ready = document.createElement("p");
    ready.className = "notice";
    ready.id = "filter-ready";
    ready.setAttribute("role", "status");
    var link = document.createElement("a");
    link.href = window.location.href;
    link.textContent = "Show them";
    ready.append("The figures for the filters you asked for are ready. ", link);
    notice.replaceWith(ready);
  }

  function ask() {
    fetch(notice.dataset.readyUrl, {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
    })
      .then(function (response) { return response.ok ? response.json() : { ready: false }; })
      .then(function (answer) {
        if (answer.ready) { showReady(); return; }
        every = Math.min(longest, every * 1.1);
        window.setTimeout(ask, every);
      })
      .catch(function () { window.setTimeout(ask, longest); });
  }

  window.setTimeout(ask, every);
});
