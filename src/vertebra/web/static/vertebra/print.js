// Wire the "Print this summary" button (inline handlers are blocked by our CSP).
document.addEventListener("DOMContentLoaded", function () {
  var button = document.getElementById("print-summary");
  if (button) { button.addEventListener("click", function () { window.print(); }); }
});
