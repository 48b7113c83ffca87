// Small DOM helpers. Text from the API only ever reaches the page as text nodes or attribute
// values (never innerHTML), so a model name or an error message cannot inject markup.

export const $ = (selector, root = document) => root.querySelector(selector);

/** `h("button", {class: "btn", onclick}, "Text", child)` */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function show(element, visible = true) {
  element.hidden = !visible;
}

/** Shows `message` in an error element (or hides it when `message` is empty). */
export function setError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

const announcer = () => document.getElementById("announcer");

/** Tells screen-reader users what changed (polite aria-live region). */
export function announce(message) {
  const region = announcer();
  if (!region) return;
  region.textContent = "";
  // A fresh text node in a new task, so the same message twice is announced twice.
  setTimeout(() => {
    region.textContent = message;
  }, 30);
}

/** A toast: `kind` is "error", "success" or "info". Errors stay until dismissed. */
export function toast(kind, title, message = "") {
  const host = document.getElementById("toasts");
  const close = h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss" }, "×");
  const item = h(
    "div",
    { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    h("div", { class: "toast-body" }, h("strong", {}, title), message ? h("p", {}, message) : null),
    close,
  );
  const remove = () => item.remove();
  close.addEventListener("click", remove);
  host.append(item);
  if (kind !== "error") setTimeout(remove, 4000);
  while (host.children.length > 4) host.firstElementChild.remove();
  return item;
}

const STATUS_TEXT = {
  collecting: "Collecting",
  training: "Training",
  ready: "Ready",
  failed: "Failed",
  pending: "Checking",
  accepted: "Accepted",
  rejected: "Rejected",
  queued: "Queued",
  running: "Running",
  succeeded: "Done",
  uploading: "Uploading",
  error: "Not uploaded",
  cancelled: "Cancelled",
  deleted: "Deleted",
};

export const statusText = (status) => STATUS_TEXT[status] ?? status;

export function badge(status, element = h("span")) {
  element.className = `badge badge-${status}`;
  element.textContent = statusText(status);
  element.hidden = false;
  return element;
}

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.valueOf()) ? "" : dateFormat.format(date);
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

export function megabytes(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}
