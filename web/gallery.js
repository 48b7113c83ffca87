// Avatar grids, the full-size lightbox (previous/next, arrow keys) and downloads, and the
// Gallery tab: every avatar of every job (generations of each model, face-avatar and
// instant-avatar batches) with its style, prompt or parameters, and "Download all" as a zip
// made in the browser. Avatar URLs are short-lived presigned GETs: an image that fails to
// load asks its owner (`refresh`) for fresh URLs, once.

import { $, announce, h, plural, setError, show, toast, when } from "./dom.js";
import { reportError, session } from "./state.js";
import { makeZip } from "./zip.js";

const lightbox = () => $("#lightbox");
/** The lightbox's list ([{avatar, label, details}]) and the one shown. */
const shown = { items: [], index: -1 };

export function initLightbox() {
  const dialog = lightbox();
  $("#lightbox-close").addEventListener("click", () => dialog.close());
  $("#lightbox-download").addEventListener("click", () => {
    const item = shown.items[shown.index];
    if (item) download(item.avatar);
  });
  $("#lightbox-prev").addEventListener("click", () => step(-1));
  $("#lightbox-next").addEventListener("click", () => step(1));
  dialog.addEventListener("keydown", (event) => {
    const delta = { ArrowLeft: -1, ArrowRight: 1 }[event.key];
    if (!delta || event.altKey || event.ctrlKey || event.metaKey) return;
    event.preventDefault();
    step(delta);
  });
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => {
    $("#lightbox-img").removeAttribute("src");
    shown.items = [];
    shown.index = -1;
  });
  $("#refresh-gallery").addEventListener("click", () => loadGallery());
  $("#download-all").addEventListener("click", downloadAll);
}

/** Opens `items[index]` full size; previous/next walk `items`. (`openLightbox(avatar, label)`
 * opens one avatar alone.) */
export function openLightbox(items, index = 0) {
  if (!Array.isArray(items)) items = [{ avatar: items, label: index }];
  shown.items = items;
  shown.index = Array.isArray(items) && typeof index === "number" ? index : 0;
  drawLightbox();
  if (!lightbox().open) lightbox().showModal();
}

function step(delta) {
  if (shown.items.length < 2) return;
  shown.index = (shown.index + delta + shown.items.length) % shown.items.length;
  drawLightbox();
  const item = shown.items[shown.index];
  announce(`${item.label}, ${shown.index + 1} of ${shown.items.length}.`);
}

function drawLightbox() {
  const { avatar, label, details } = shown.items[shown.index];
  const img = $("#lightbox-img");
  img.src = avatar.url;
  img.alt = label;
  const size = avatar.width && avatar.height ? `${avatar.width}×${avatar.height}` : null;
  $("#lightbox-caption").replaceChildren(
    h("strong", {}, label),
    details ? h("span", { class: "lightbox-details" }, details) : null,
    h("span", { class: "muted" }, [size, `${shown.index + 1} of ${shown.items.length}`].filter(Boolean).join(" · ")),
  );
  const many = shown.items.length > 1;
  show($("#lightbox-prev"), many);
  show($("#lightbox-next"), many);
}

/**
 * Fills `list` (a <ul>) with one tile per avatar; `placeholders` empty tiles stand for avatars
 * still on their way. `refresh()` re-fetches the owner when a URL has expired. `details(avatar)`
 * says what made it (style, prompt, parameters), shown on the tile and in the lightbox.
 */
export function renderAvatars(list, avatars, { label, placeholders = 0, refresh, details } = {}) {
  const items = avatars.map((avatar, index) => ({
    avatar,
    label: typeof label === "function" ? label(avatar, index) : `${label} ${index + 1}`,
    details: details?.(avatar) ?? avatar.details ?? null,
    refresh: avatar.refresh ?? refresh,
  }));
  list.replaceChildren(
    ...items.map((item, index) => avatarTile(items, index)),
    ...Array.from({ length: placeholders }, () =>
      h(
        "li",
        { class: "avatar-tile placeholder", "aria-hidden": "true" },
        h("span", { class: "shimmer" }),
      ),
    ),
  );
}

function avatarTile(items, index) {
  const { avatar, label, refresh, details } = items[index];
  let retried = false;
  const img = h("img", {
    src: avatar.url,
    alt: label,
    loading: "lazy",
    decoding: "async",
    width: avatar.width || undefined,
    height: avatar.height || undefined,
    class: "avatar-img",
  });
  img.addEventListener("error", () => {
    if (!retried && refresh) {
      retried = true;
      refresh();
    } else {
      img.closest("li")?.classList.add("broken");
    }
  });
  const open = h(
    "button",
    {
      type: "button",
      class: "avatar-open",
      "aria-label": `Open ${label} full size`,
      onclick: () => openLightbox(items, index),
    },
    img,
  );
  return h(
    "li",
    { class: "avatar-tile checker", dataset: { avatarId: avatar.avatar_id } },
    open,
    avatar.style && !details ? h("span", { class: "avatar-style" }, avatar.style) : null,
    details ? h("span", { class: "avatar-details" }, details) : null,
  );
}

const extensionOf = (avatar) =>
  (avatar.content_type || "image/png").split("/")[1].replace("jpeg", "jpg");

/**
 * Saves the image under a readable name. A cross-origin `<a download>` is ignored by browsers,
 * so fetch the bytes first (works where the bucket answers CORS); otherwise open it in a tab.
 */
export async function download(avatar) {
  const name = `${avatar.avatar_id || "avatar"}.${extensionOf(avatar)}`;
  try {
    const response = await fetch(avatar.url, { mode: "cors", cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status}`);
    save(await response.blob(), name);
  } catch {
    toast("info", "Opening the image in a new tab", "Save it from there.");
    const link = h("a", { href: avatar.url, target: "_blank", rel: "noopener", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  }
}

function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: name, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// -- the gallery of every job ------------------------------------------------------------------

const PAGES = 10; // at most this many pages of each list: a bounded walk
const gallery = { items: [], loading: null, loadedFor: null };

const styleName = (style) =>
  style ? style.charAt(0).toUpperCase() + style.slice(1).replaceAll("_", " ") : "";

async function everyPage(list) {
  const items = [];
  let cursor = null;
  for (let page = 0; page < PAGES; page += 1) {
    const answer = await list(cursor);
    items.push(...answer.items);
    cursor = answer.next_cursor;
    if (!cursor) break;
  }
  return items;
}

/** What made a face avatar: its prompt if any, and the parameters a person chose. */
function faceDetails(job) {
  const p = job.parameters ?? {};
  const parts = [p.prompt ? `“${p.prompt}”` : "Default prompt"];
  if (p.gender) parts.push(p.gender.replace("_", "-"));
  if (p.width && p.height) parts.push(`${p.width}×${p.height}`);
  if (p.num_inference_steps) parts.push(`${p.num_inference_steps} steps`);
  if (p.guidance_scale) parts.push(`guidance ${p.guidance_scale}`);
  if (p.remove_background) parts.push(`background ${p.bg_color ?? "removed"}`);
  return parts.join(" · ");
}

function generationDetails(generation, avatar, modelName) {
  const request = (generation.requests ?? []).find((r) => r.style === avatar.style);
  const prompt = request?.prompt ?? generation.requests?.find((r) => r.prompt)?.prompt;
  return [styleName(avatar.style) || "Avatar", prompt ? `“${prompt}”` : null, modelName]
    .filter(Boolean)
    .join(" · ");
}

/** The tab was opened (or Refresh pressed): read every job's avatars afresh. */
export function loadGallery() {
  const api = session.api;
  if (!api) return null;
  if (gallery.loading && gallery.loadedFor === api) return gallery.loading;
  gallery.loadedFor = api;
  $("#gallery-status").textContent = "Reading all your jobs…";
  gallery.loading = readGallery(api)
    .then((items) => {
      if (api !== session.api) return;
      gallery.items = items;
      renderGallery();
    })
    .catch((error) => {
      $("#gallery-status").textContent = "";
      reportError("Could not read your avatars", error, $("#gallery-error"));
    })
    .finally(() => {
      gallery.loading = null;
    });
  return gallery.loading;
}

async function readGallery(api) {
  setError($("#gallery-error"), "");
  const [models, faceJobs, instantJobs] = await Promise.all([
    everyPage((cursor) => api.listModels(cursor)),
    everyPage((cursor) => api.listFaceJobs(cursor)),
    everyPage((cursor) => api.listInstantJobs(cursor)),
  ]);
  const ready = models.filter((model) => model.status === "ready");
  const generations = await Promise.all(
    ready.map(async (model) => ({
      model,
      items: await everyPage((cursor) => api.listGenerations(model.model_id, cursor)),
    })),
  );
  const items = [];
  for (const { model, items: list } of generations) {
    const name = model.name || `Untitled ${model.subject}`;
    for (const generation of list) {
      for (const avatar of generation.avatars ?? []) {
        items.push({
          avatar,
          kind: "generation",
          at: generation.created_at,
          label: `${styleName(avatar.style) || "Avatar"} avatar of ${name}`,
          details: generationDetails(generation, avatar, name),
        });
      }
    }
  }
  for (const job of faceJobs) {
    for (const avatar of job.avatars ?? []) {
      items.push({ avatar, kind: "face", at: job.created_at, label: "Face avatar", details: faceDetails(job) });
    }
  }
  for (const job of instantJobs) {
    for (const avatar of job.avatars ?? []) {
      const details = [`Instant · ${job.subject}`, job.prompt ? `“${job.prompt}”` : null];
      items.push({
        avatar,
        kind: "instant",
        at: job.created_at,
        label: `Instant ${job.subject} avatar`,
        details: details.filter(Boolean).join(" · "),
      });
    }
  }
  items.sort((a, b) => String(b.at).localeCompare(String(a.at)));
  return items;
}

function renderGallery() {
  const items = gallery.items;
  const counts = ["generation", "face", "instant"].map(
    (kind) => items.filter((item) => item.kind === kind).length,
  );
  $("#gallery-status").textContent = items.length
    ? `${plural(items.length, "avatar")}: ${counts[0]} from your models, ${counts[1]} face, ` +
      `${counts[2]} instant.`
    : "";
  show($("#gallery-empty"), items.length === 0);
  $("#download-all").disabled = items.length === 0;
  const grid = $("#gallery-grid");
  renderAvatars(
    grid,
    items.map((item) => ({
      ...item.avatar,
      details: `${item.details} · ${when(item.at)}`,
      refresh: () => loadGallery(),
    })),
    { label: (avatar, index) => `${items[index].label} ${index + 1}` },
  );
}

export function resetGallery() {
  gallery.items = [];
  gallery.loadedFor = null;
  $("#gallery-grid").replaceChildren();
  $("#gallery-status").textContent = "";
  show($("#gallery-empty"), false);
}

/** Every avatar in one zip, made here: the images as they are, and what made each. */
async function downloadAll() {
  const button = $("#download-all");
  const items = gallery.items;
  if (!items.length) return;
  button.disabled = true;
  const status = $("#gallery-status");
  const files = [];
  const manifest = [];
  try {
    for (const [index, item] of items.entries()) {
      status.textContent = `Fetching ${index + 1} of ${items.length}…`;
      const response = await fetch(item.avatar.url, { mode: "cors", cache: "no-store" });
      if (!response.ok) throw new Error(`avatar ${index + 1}: the image answered ${response.status}`);
      const bytes = new Uint8Array(await response.arrayBuffer());
      const style = item.avatar.style ? `-${item.avatar.style.replace(/[^A-Za-z0-9_-]/g, "")}` : "";
      const name = `${String(index + 1).padStart(3, "0")}-${item.kind}${style}.${extensionOf(item.avatar)}`;
      files.push({ name, bytes, date: new Date(item.at) });
      manifest.push({ file: name, kind: item.kind, label: item.label, details: item.details, created_at: item.at, avatar_id: item.avatar.avatar_id });
    }
    const text = new TextEncoder().encode(`${JSON.stringify(manifest, null, 2)}\n`);
    files.push({ name: "avatars.json", bytes: text });
    save(makeZip(files), `avatars-${session.user || "all"}.zip`);
    status.textContent = `${plural(items.length, "avatar")} saved in one zip.`;
    announce(status.textContent);
  } catch (error) {
    status.textContent = "";
    reportError("Could not make the zip", error, $("#gallery-error"));
  } finally {
    button.disabled = false;
  }
}
