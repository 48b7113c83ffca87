// The Face Avatar parameters and their ranges, exactly as the seed gives them. The form's
// min/max/step attributes are set from this table, and the same table checks a request
// before it is sent, so the user reads a clear message instead of a round trip.

export const FACE_NUMBERS = {
  batch: { label: "Batch", min: 1, max: 8, integer: true, default: 4 },
  width: { label: "Width", min: 256, max: 1536, integer: true, default: 512 },
  height: { label: "Height", min: 256, max: 1536, integer: true, default: 512 },
  num_inference_steps: { label: "Inference steps", min: 1, max: 50, integer: true, default: 30 },
  guidance_scale: { label: "Guidance scale", min: 1, max: 30, integer: false, default: 7.5 },
};

export const GENDERS = ["male", "female", "non_binary"];
const HEX_COLOUR = /^#[0-9A-Fa-f]{6}$/;

/** The message for a bad number, or "" when `raw` (the input's text) is fine. */
export function checkNumber(name, raw) {
  const spec = FACE_NUMBERS[name];
  const text = String(raw ?? "").trim();
  const range = `between ${spec.min} and ${spec.max}`;
  if (text === "") return `${spec.label} is required: a number ${range}.`;
  const value = Number(text);
  if (!Number.isFinite(value)) return `${spec.label} must be a number ${range}.`;
  if (spec.integer && !Number.isInteger(value))
    return `${spec.label} must be a whole number ${range}.`;
  if (value < spec.min || value > spec.max) return `${spec.label} must be ${range} (got ${text}).`;
  return "";
}

export function checkColour(raw) {
  return HEX_COLOUR.test(String(raw ?? "").trim())
    ? ""
    : "Background colour must be #RRGGBB, for example #1A2B3C.";
}

/**
 * The request body from the form's raw values, and the problems found. With `check` false
 * nothing is refused here: the body carries what the form holds (numbers where they parse),
 * so the server's own validation answers.
 */
export function faceRequest(values, { check = true } = {}) {
  const errors = [];
  const body = { image_id: values.image_id };
  for (const name of ["prompt", "negative_prompt"]) {
    const text = (values[name] ?? "").trim();
    if (text) body[name] = text;
  }
  if (values.gender) body.gender = values.gender;
  for (const name of Object.keys(FACE_NUMBERS)) {
    const raw = String(values[name] ?? "").trim();
    const message = check ? checkNumber(name, raw) : "";
    if (message) errors.push({ field: name, message });
    else if (raw !== "") body[name] = Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  body.remove_background = Boolean(values.remove_background);
  const colour = String(values.bg_color ?? "").trim();
  const colourMessage = check ? checkColour(colour) : "";
  if (colourMessage) errors.push({ field: "bg_color", message: colourMessage });
  else body.bg_color = colour;
  if (check && !values.image_id) {
    errors.push({ field: "image_id", message: "Choose a reference photo first." });
  }
  return { body, errors };
}
