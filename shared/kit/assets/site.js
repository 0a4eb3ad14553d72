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

  // Passkeys (WebAuthn), where the browser has them; the forms work without (a code
  // for a second factor, the password to sign in). Each asks the server for a
  // challenge, has the browser answer it, and sends the answer in the form's hidden
  // fields, through the form's own post.
  var webauthn = window.PublicKeyCredential && navigator.credentials &&
    !/^[0-9.]+$|^\[/.test(location.hostname);

  function fromB64u(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { bytes[i] = raw.charCodeAt(i); }
    return bytes.buffer;
  }

  function toB64u(buffer) {
    var bytes = new Uint8Array(buffer);
    var raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function creationOptions(options) {
    if (PublicKeyCredential.parseCreationOptionsFromJSON) {
      return PublicKeyCredential.parseCreationOptionsFromJSON(options);
    }
    options.challenge = fromB64u(options.challenge);
    options.user.id = fromB64u(options.user.id);
    (options.excludeCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    return options;
  }

  function requestOptions(options) {
    if (PublicKeyCredential.parseRequestOptionsFromJSON) {
      return PublicKeyCredential.parseRequestOptionsFromJSON(options);
    }
    options.challenge = fromB64u(options.challenge);
    (options.allowCredentials || []).forEach(function (c) { c.id = fromB64u(c.id); });
    return options;
  }

  // The browser's answer as JSON, as the server reads it.
  function answerText(credential) {
    if (credential.toJSON) { return JSON.stringify(credential.toJSON()); }
    var r = credential.response;
    var response = { clientDataJSON: toB64u(r.clientDataJSON) };
    if (r.attestationObject) { response.attestationObject = toB64u(r.attestationObject); }
    if (r.authenticatorData) { response.authenticatorData = toB64u(r.authenticatorData); }
    if (r.signature) { response.signature = toB64u(r.signature); }
    if (r.userHandle) { response.userHandle = toB64u(r.userHandle); }
    return JSON.stringify({
      id: credential.id, rawId: toB64u(credential.rawId), type: credential.type,
      response: response, clientExtensionResults: credential.getClientExtensionResults()
    });
  }

  // A challenge from `url`, with the form's token for a signed-in page.
  function challenge(url, form) {
    var headers = { "Accept": "application/json", "Content-Type": "application/json" };
    var token = form.querySelector('input[name="csrf_token"]');
    if (token) { headers["X-CSRF-Token"] = token.value; }
    return fetch(url, { method: "POST", headers: headers, body: "{}", credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("no challenge (" + response.status + ")"); }
        return response.json();
      });
  }

  // What went wrong, said beside the button (a passkey refused or cancelled).
  function problem(place, text) {
    var note = place.querySelector(".passkey-problem");
    if (!note) {
      note = document.createElement("span");
      note.className = "passkey-problem field-error";
      note.setAttribute("role", "status");
      place.appendChild(note);
    }
    note.textContent = " " + text;
  }

  function send(form) {
    if (form.requestSubmit) { form.requestSubmit(); } else { form.submit(); }
  }

  function answer(form, credential, token, field) {
    form.querySelector('input[name="' + field + '"]').value = answerText(credential);
    form.querySelector('input[name="' + field + '_challenge"]').value = token;
  }

  if (!webauthn) { return; }

  // "Use a passkey": the second factor, in place of a code.
  Array.prototype.forEach.call(document.querySelectorAll("[data-passkey-get]"), function (button) {
    var form = button.form;
    var place = button.parentNode;
    place.hidden = false;
    button.addEventListener("click", function () {
      // The form's other fields first (the password, where it asks for one): the
      // passkey's answer is good once, for a few minutes.
      var code = form.querySelector('input[name="code"]');
      var required = code && code.required;
      if (code) { code.required = false; }
      if (!form.reportValidity()) {
        if (code) { code.required = required; }
        return;
      }
      challenge(button.getAttribute("data-passkey-get"), form).then(function (options) {
        return navigator.credentials.get({ publicKey: requestOptions(options.publicKey) })
          .then(function (credential) {
            answer(form, credential, options.challenge, "passkey");
            var code = form.querySelector('input[name="code"]');
            if (code) { code.required = false; }
            send(form);
          });
      }).catch(function () {
        if (code) { code.required = required; }
        problem(place, "The passkey did not answer. Try again, or type a code.");
      });
    });
  });

  // Adding a passkey: the form's post carries the new credential.
  Array.prototype.forEach.call(document.querySelectorAll("form[data-passkey-create]"), function (form) {
    var place = form.querySelector(".passkey-choice");
    var note = form.querySelector(".passkey-needs-script");
    if (place) { place.hidden = false; }
    if (note) { note.hidden = true; }
    form.addEventListener("submit", function (event) {
      var field = form.querySelector('input[name="credential"]');
      if (field.value) { return; }
      event.preventDefault();
      challenge(form.getAttribute("data-passkey-create"), form).then(function (options) {
        return navigator.credentials.create({ publicKey: creationOptions(options.publicKey) })
          .then(function (credential) {
            answer(form, credential, options.challenge, "credential");
            form.submit();
          });
      }).catch(function () {
        problem(place || form, "No passkey was made. Try again.");
      });
    });
  });

  // Signing in with a passkey, without the password: offered in the address field's
  // autofill where the browser can (conditional mediation), and by its button.
  Array.prototype.forEach.call(document.querySelectorAll("form[data-passkey-sign-in]"), function (form) {
    var url = form.getAttribute("data-passkey-sign-in");
    var place = form.querySelector(".passkey-choice");
    var waiting = null;
    function signIn(options, mediation, signal) {
      var request = { publicKey: requestOptions(options.publicKey) };
      if (mediation) { request.mediation = mediation; request.signal = signal; }
      return navigator.credentials.get(request).then(function (credential) {
        answer(form, credential, options.challenge, "passkey");
        form.submit();
      });
    }
    challenge(url, form).then(function (options) {
      place.hidden = false;
      if (!PublicKeyCredential.isConditionalMediationAvailable) { return; }
      return PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) { return; }
        waiting = new AbortController();
        return signIn(options, "conditional", waiting.signal);
      });
    }).catch(function () {});
    form.addEventListener("submit", function (event) {
      if (form.querySelector('input[name="passkey"]').value) { return; }
      event.preventDefault();
      if (waiting) { waiting.abort(); waiting = null; }
      challenge(url, form).then(function (options) {
        return signIn(options, null, null);
      }).catch(function () {
        problem(place, "The passkey did not answer. Try again, or use your password.");
      });
    });
  });
})();
