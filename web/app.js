// The try-it page and reference client of the avatar-pipeline API: session and settings,
// tabs, and the custom-model journey (model, selfies, training, generations).

import { initAccount, loadAccount, resetAccount } from "./account.js";
import { Api, devToken } from "./api.js";
import { $, announce, h, setError, show, toast } from "./dom.js";
import { startEvents, stopEvents } from "./events.js";
import { initFaces, resetFaces, showFaces } from "./faces.js";
import { initInstant, resetInstant, showInstant } from "./instant.js";
import { initCalls } from "./calls.js";
import { initLightbox, loadGallery, resetGallery } from "./gallery.js";
import { initModels, loadModels, resetModels } from "./models.js";
import { KEYS, defaultBaseUrl, session } from "./state.js";

const USER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const RECENT_USERS = "ap.recentUsers";

// -- session --------------------------------------------------------------------------------

function startSession(user, token) {
  sessionStorage.setItem(KEYS.user, user);
  sessionStorage.setItem(KEYS.token, token);
  session.user = user;
  session.api = new Api(session.baseUrl, token, { onUnauthorized: signedOutByServer });
  rememberUser(user);
  $("#session-user").textContent = user;
  show($("#session"));
  show($("#signin"), false);
  show($("#workspace"));
  resetFaces();
  resetInstant();
  selectTab($("#tab-models"));
  loadModels(true);
  startEvents();
  announce(`Signed in as ${user}.`);
}

function endSession(message = "") {
  sessionStorage.removeItem(KEYS.token);
  session.api = null;
  stopEvents();
  resetModels();
  resetFaces();
  resetInstant();
  resetAccount();
  resetGallery();
  show($("#session"), false);
  show($("#workspace"), false);
  show($("#signin"));
  $("#signin-user").value = session.user || sessionStorage.getItem(KEYS.user) || "";
  setError($("#signin-error"), message);
  renderRecentUsers();
  $("#signin-user").focus();
}

let signingOut = false;
function signedOutByServer(error) {
  if (signingOut) return;
  signingOut = true;
  setTimeout(() => {
    signingOut = false;
  }, 500);
  endSession(
    `The API answered “${error.message}”: the token was refused or has expired. Sign in again.`,
  );
  toast("error", "Signed out", error.message);
}

async function signIn(event) {
  event.preventDefault();
  const input = $("#signin-user");
  const user = input.value.trim();
  const problem = USER_NAME.test(user)
    ? ""
    : "Use 1 to 64 letters, digits, “.”, “_” or “-” (no spaces).";
  setError($("#signin-user-error"), problem);
  input.setAttribute("aria-invalid", problem ? "true" : "false");
  setError($("#signin-error"), "");
  if (problem) {
    input.focus();
    return;
  }
  const button = $("#signin-submit");
  button.disabled = true;
  try {
    const pasted = $("#signin-token").value.trim();
    let token = !$("#paste-token-field").hidden && pasted ? pasted : null;
    if (!token) token = await devToken(session.baseUrl, user);
    if (!token) {
      show($("#paste-token-field"));
      setError(
        $("#signin-error"),
        "No local token endpoint here: paste a bearer token for this user.",
      );
      $("#signin-token").focus();
      return;
    }
    try {
      await new Api(session.baseUrl, token).listModels();
    } catch (error) {
      if (error.status !== 401) throw error;
      setError($("#signin-error"), `The API refused this token: ${error.message}.`);
      return;
    }
    startSession(jwtSubject(token) ?? user, token);
  } catch (error) {
    setError($("#signin-error"), error.message);
  } finally {
    button.disabled = false;
  }
}

/** The owner a token speaks for (its `sub`), when it is a readable JWT. */
function jwtSubject(token) {
  try {
    const payload = token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    const sub = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, "="))).sub;
    return typeof sub === "string" && USER_NAME.test(sub) ? sub : null;
  } catch {
    return null;
  }
}

function rememberUser(user) {
  const recent = recentUsers().filter((name) => name !== user);
  localStorage.setItem(RECENT_USERS, JSON.stringify([user, ...recent].slice(0, 6)));
}

function recentUsers() {
  try {
    const names = JSON.parse(localStorage.getItem(RECENT_USERS) || "[]");
    return Array.isArray(names) ? names.filter((name) => USER_NAME.test(name)) : [];
  } catch {
    return [];
  }
}

function renderRecentUsers() {
  const names = recentUsers();
  const suggestions = names.length ? names : ["alice", "bob", "demo-user"];
  $("#recent-user-chips").replaceChildren(
    ...suggestions.map((name) =>
      h(
        "button",
        {
          type: "button",
          class: "chip",
          onclick: () => {
            $("#signin-user").value = name;
            $("#signin-form").requestSubmit();
          },
        },
        name,
      ),
    ),
  );
}

// -- settings -------------------------------------------------------------------------------

function initSettings() {
  const dialog = $("#settings-dialog");
  $("#open-settings").addEventListener("click", () => {
    $("#settings-base").value = session.baseUrl;
    $("#settings-skip-checks").checked = session.skipChecks;
    dialog.showModal();
  });
  $("#settings-reset").addEventListener("click", () => {
    $("#settings-base").value = defaultBaseUrl();
    $("#settings-skip-checks").checked = false;
  });
  $("#settings-form").addEventListener("submit", (event) => {
    if (event.submitter?.value !== "save") return;
    const base = $("#settings-base").value.trim().replace(/\/+$/, "");
    let valid = true;
    try {
      new URL(base);
    } catch {
      valid = false;
    }
    if (!valid) {
      event.preventDefault();
      $("#settings-base").setAttribute("aria-invalid", "true");
      toast("error", "Not a URL", "The API base URL must look like http://127.0.0.1:3000/v1.");
      return;
    }
    $("#settings-base").removeAttribute("aria-invalid");
    const changed = base !== session.baseUrl;
    if (base === defaultBaseUrl()) sessionStorage.removeItem(KEYS.base);
    else sessionStorage.setItem(KEYS.base, base);
    sessionStorage.setItem(KEYS.skip, $("#settings-skip-checks").checked ? "1" : "0");
    document.body.classList.toggle("skip-checks", session.skipChecks);
    renderFooter();
    if (changed && session.api) {
      endSession("The API base URL changed: sign in again.");
    }
    toast("success", "Settings saved");
  });
}

async function renderFooter() {
  const base = session.baseUrl;
  const status = h("span", { class: "health" }, "checking…");
  $("#footer-base").replaceChildren(h("code", {}, base), " ", status);
  try {
    await new Api(base, null).health();
    status.className = "health ok";
    status.textContent = "online";
  } catch (error) {
    status.className = "health down";
    status.textContent = `unreachable (${error.message})`;
  }
}

// -- tabs -----------------------------------------------------------------------------------

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    show(document.getElementById(other.getAttribute("aria-controls")), selected);
  }
  if (tab.id === "tab-faces") {
    showFaces();
    showInstant();
  }
  if (tab.id === "tab-account") loadAccount();
  if (tab.id === "tab-gallery") loadGallery();
}

function initTabs() {
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const tab of tabs) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (!step) return;
      const next = tabs[(tabs.indexOf(tab) + step + tabs.length) % tabs.length];
      next.focus();
      selectTab(next);
    });
  }
}

// -- start ----------------------------------------------------------------------------------

function main() {
  document.body.classList.toggle("skip-checks", session.skipChecks);
  initSettings();
  initTabs();
  initLightbox();
  initCalls();
  initModels();
  initFaces();
  initInstant();
  initAccount({ onDeleted: () => endSession("All your data was deleted. Sign in to start afresh.") });
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => endSession());
  renderFooter();
  const token = sessionStorage.getItem(KEYS.token);
  const user = sessionStorage.getItem(KEYS.user);
  if (token && user) startSession(user, token);
  else endSession();
}

main();
