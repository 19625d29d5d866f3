// Small DOM helpers. Text from the server is only ever set as text, never as HTML.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

/** Show an ApiError (code, message, hint) in `box`, or clear it with null. */
export function showError(box, error) {
  box.replaceChildren();
  if (!error) {
    box.hidden = true;
    delete box.dataset.code;
    return;
  }
  box.dataset.code = error.code;
  box.append(
    el("p", {}, el("code", { class: "code", text: error.code }), " ", error.message || ""),
  );
  if (error.hint) box.append(el("p", { class: "hint", text: `Hint: ${error.hint}` }));
  if (error.requestId) {
    box.append(el("p", { class: "note", text: `Request id: ${error.requestId}` }));
  }
  box.hidden = false;
}

export function ms(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value)} ms`;
}

export function seconds(value) {
  return value === null || value === undefined ? "–" : `${value.toFixed(2)} s`;
}

/** A download of `blob` through `link`, replacing the object URL it had before. */
export function blobLink(link, blob, filename) {
  if (link.dataset.objectUrl) URL.revokeObjectURL(link.dataset.objectUrl);
  const href = URL.createObjectURL(blob);
  link.dataset.objectUrl = href;
  link.href = href;
  link.download = filename;
  link.hidden = false;
  return href;
}
