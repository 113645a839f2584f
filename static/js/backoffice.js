// Keyboard-first helpers. The back-office works without this file; it only adds speed.
(function () {
  "use strict";
  var pendingG = false, timer = null;
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  document.addEventListener("keydown", function (ev) {
    // Escape leaves a field (pages that open with the cursor in a box), so the hotkeys work again.
    if (ev.key === "Escape" && typing(ev.target) && ev.target.tagName !== "SELECT") { ev.target.blur(); return; }
    if (ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev.target)) { return; }
    if (ev.key === "/") {
      var first = document.querySelector(".filter-bar input, .filter-bar select");
      if (first) { ev.preventDefault(); first.focus(); }
      return;
    }
    if (pendingG) {
      pendingG = false; clearTimeout(timer);
      var link = document.querySelector('[data-hotkey="' + ev.key + '"]');
      if (link) { ev.preventDefault(); window.location.assign(link.href); }
      return;
    }
    if (ev.key === "g") { pendingG = true; timer = setTimeout(function () { pendingG = false; }, 1200); }
  });
  // A command form is sent once: the button is disabled on submit. The idempotency key is the real guard.
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form.hasAttribute("data-once")) {
      if (form.dataset.sent) { ev.preventDefault(); return; }
      form.dataset.sent = "1";
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    }
  });
})();
