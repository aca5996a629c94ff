// Reloads a page that asks for it (<body data-refresh="5">) while it is
// shown, unless the operator is typing into a form.
(function () {
  var s = Number(document.body.dataset.refresh || 0);
  if (!s) return;
  setInterval(function () {
    var a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "TEXTAREA" || a.tagName === "SELECT")) return;
    if (document.hidden) return;
    location.reload();
  }, s * 1000);
})();
