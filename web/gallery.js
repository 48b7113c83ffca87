// Avatar grids, the full-size lightbox and downloads. Avatar URLs are short-lived presigned
// GETs: an image that fails to load asks its owner (`refresh`) for fresh URLs, once.

import { $, h, toast } from "./dom.js";

const lightbox = () => $("#lightbox");
let current = null;

export function initLightbox() {
  const dialog = lightbox();
  $("#lightbox-close").addEventListener("click", () => dialog.close());
  $("#lightbox-download").addEventListener("click", () => current && download(current));
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => {
    $("#lightbox-img").removeAttribute("src");
    current = null;
  });
}

export function openLightbox(avatar, label) {
  current = { ...avatar, label };
  const img = $("#lightbox-img");
  img.src = avatar.url;
  img.alt = label;
  $("#lightbox-caption").textContent = [
    label,
    avatar.width && avatar.height ? `${avatar.width}×${avatar.height}` : null,
  ]
    .filter(Boolean)
    .join(" · ");
  lightbox().showModal();
}

/**
 * Fills `list` (a <ul>) with one tile per avatar; `placeholders` empty tiles stand for avatars
 * still on their way. `refresh()` re-fetches the owner when a URL has expired.
 */
export function renderAvatars(list, avatars, { label, placeholders = 0, refresh } = {}) {
  list.replaceChildren(
    ...avatars.map((avatar, index) => avatarTile(avatar, `${label} ${index + 1}`, refresh)),
    ...Array.from({ length: placeholders }, () =>
      h(
        "li",
        { class: "avatar-tile placeholder", "aria-hidden": "true" },
        h("span", { class: "shimmer" }),
      ),
    ),
  );
}

function avatarTile(avatar, label, refresh) {
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
      onclick: () => openLightbox(avatar, label),
    },
    img,
  );
  return h(
    "li",
    { class: "avatar-tile checker", dataset: { avatarId: avatar.avatar_id } },
    open,
    avatar.style ? h("span", { class: "avatar-style" }, avatar.style) : null,
  );
}

/**
 * Saves the image under a readable name. A cross-origin `<a download>` is ignored by browsers,
 * so fetch the bytes first (works where the bucket answers CORS); otherwise open it in a tab.
 */
export async function download(avatar) {
  const extension = (avatar.content_type || "image/png").split("/")[1].replace("jpeg", "jpg");
  const name = `${avatar.avatar_id || "avatar"}.${extension}`;
  try {
    const response = await fetch(avatar.url, { mode: "cors", cache: "no-store" });
    if (!response.ok) throw new Error(`${response.status}`);
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch {
    toast("info", "Opening the image in a new tab", "Save it from there.");
    const link = h("a", { href: avatar.url, target: "_blank", rel: "noopener", hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
  }
}
