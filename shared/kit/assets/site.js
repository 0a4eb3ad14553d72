// The site's one script, and only an enhancement: every page works without it.
(function () {
  "use strict";

  // A refused form: its error summary takes the focus, so that a screen reader reads
  // it and the keyboard starts from it (its links lead to the fields).
  var summary = document.querySelector(".error-summary");
  if (summary) {
    summary.setAttribute("tabindex", "-1");
    summary.focus();
  }

  // A "Show" button beside each password field shows what was typed, and hides it
  // again; a polite live region says which, for those who cannot see the button change.
  var fields = document.querySelectorAll('input[type="password"][id]');
  Array.prototype.forEach.call(fields, function (input) {
    var wrap = document.createElement("div");
    wrap.className = "with-reveal";
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(input);
    // Shown as text, the password must not go to a spelling service or a keyboard's
    // dictionary.
    input.setAttribute("spellcheck", "false");
    input.setAttribute("autocapitalize", "none");
    input.setAttribute("autocorrect", "off");
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
    var status = document.createElement("span");
    status.className = "visually-hidden";
    status.setAttribute("aria-live", "polite");
    function show(visible, announce) {
      input.type = visible ? "text" : "password";
      word.textContent = visible ? "Hide" : "Show";
      if (announce) {
        status.textContent = visible ? "Your password is shown." : "Your password is hidden.";
      }
    }
    show(false, false);
    button.addEventListener("click", function () {
      show(input.type === "password", true);
    });
    // A form sent with the password shown leaves no readable field behind.
    if (input.form) {
      input.form.addEventListener("submit", function () { show(false, false); });
    }
    wrap.appendChild(button);
    wrap.appendChild(status);
  });
})();
