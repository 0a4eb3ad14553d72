// The site's one script, and only an enhancement: every page works without it.
// A "Show" button beside each password field shows what was typed, and hides it again.
(function () {
  "use strict";
  var fields = document.querySelectorAll('input[type="password"][id]');
  Array.prototype.forEach.call(fields, function (input) {
    var wrap = document.createElement("div");
    wrap.className = "with-reveal";
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(input);
    var button = document.createElement("button");
    button.type = "button";
    button.className = "secondary small";
    button.setAttribute("aria-controls", input.id);
    var word = document.createElement("span");
    var what = document.createElement("span");
    what.className = "visually-hidden";
    what.textContent = " password";
    button.appendChild(word);
    button.appendChild(what);
    function show(visible) {
      input.type = visible ? "text" : "password";
      word.textContent = visible ? "Hide" : "Show";
    }
    show(false);
    button.addEventListener("click", function () {
      show(input.type === "password");
      input.focus();
    });
    // A form sent with the password shown still leaves no readable field behind.
    if (input.form) {
      input.form.addEventListener("submit", function () { show(false); });
    }
    wrap.appendChild(button);
  });
})();
