// The API's refusals in the form's own words. A 422 names the field and words the problem as
// the validator did (`height: Input should be less than or equal to 1536`); a person reads
// "Height must be at most 1,536 px". The API's own text stays in the "How this was called"
// panel for developers. 429 and 503 answers say when to try again (their Retry-After).

/** What the forms call each request field, and the unit of its number. */
const FIELDS = {
  batch: { label: "Batch" },
  width: { label: "Width", unit: "px" },
  height: { label: "Height", unit: "px" },
  num_inference_steps: { label: "Inference steps" },
  guidance_scale: { label: "Guidance scale" },
  bg_color: { label: "Background colour" },
  remove_background: { label: "Remove background" },
  prompt: { label: "Prompt" },
  negative_prompt: { label: "Negative prompt" },
  gender: { label: "Gender" },
  image_id: { label: "Reference photo" },
  subject: { label: "Subject" },
  name: { label: "Name" },
  count: { label: "Count" },
  style: { label: "Style" },
  requests: { label: "Styles" },
  files: { label: "Photos" },
  content_type: { label: "Photo type" },
  body: { label: "The request" },
};

const number = (text) => {
  const value = Number(text);
  return Number.isFinite(value) ? value.toLocaleString("en-US") : text;
};

const ordinal = (n) => ["first", "second", "third", "fourth", "fifth"][n] ?? `#${n + 1}`;

/** The form's name for a field path such as `height` or `requests.1.count`. */
export function fieldLabel(field) {
  const parts = String(field ?? "body").split(".");
  const last = parts.findLast((part) => !/^\d+$/.test(part)) ?? "body";
  const spec = FIELDS[last] ?? { label: capitalise(last.replaceAll("_", " ")) };
  const index = parts.find((part) => /^\d+$/.test(part));
  if (parts[0] === "requests" && index !== undefined && last === "count") {
    return { ...spec, label: `How many avatars of the ${ordinal(Number(index))} style` };
  }
  if (parts[0] === "files" && index !== undefined) {
    return { ...spec, label: `Photo ${Number(index) + 1}` };
  }
  return spec;
}

function capitalise(text) {
  const value = String(text ?? "").trim();
  return value ? value.charAt(0).toUpperCase() + value.slice(1) : value;
}

const sentence = (text) => {
  const value = capitalise(text);
  return /[.!?…]$/.test(value) ? value : `${value}.`;
};

/** One validator problem ("field: message", or a bare message about `field`) in words. */
export function humanizeProblem(field, text) {
  let message = String(text ?? "");
  const prefix = `${field}: `;
  if (field && message.startsWith(prefix)) message = message.slice(prefix.length);
  else if (!field || !/^(Input|String|Field|Value|List|Extra|Decimal)\b/.test(message)) {
    return sentence(message); // the API's own sentence, already meant for people
  }
  const { label, unit } = fieldLabel(field);
  const withUnit = (n) => `${number(n)}${unit ? ` ${unit}` : ""}`;
  const rules = [
    [/^Input should be less than or equal to (\S+)/, (m) => `must be at most ${withUnit(m[1])}`],
    [/^Input should be greater than or equal to (\S+)/, (m) => `must be at least ${withUnit(m[1])}`],
    [/^Input should be less than (\S+)/, (m) => `must be less than ${withUnit(m[1])}`],
    [/^Input should be greater than (\S+)/, (m) => `must be more than ${withUnit(m[1])}`],
    [/^Input should be a valid integer/, () => "must be a whole number"],
    [/^Input should be a valid (number|decimal)/, () => "must be a number"],
    [/^Input should be a valid boolean/, () => "must be on or off"],
    [/^Input should be a valid string/, () => "must be text"],
    [/^Input should be (?:a finite number)/, () => "must be a number"],
    [
      /^Input should be (.+)$/,
      (m) => `must be one of ${m[1].replaceAll("'", "").replace(/ or /, " or ")}`,
    ],
    [/^Field required/, () => (field === "image_id" ? "is needed: choose a photo first" : "is required")],
    [/^String should have at most (\d+) characters?/, (m) => `can be at most ${number(m[1])} characters long`],
    [/^String should have at least (\d+) characters?/, (m) => `needs at least ${number(m[1])} characters`],
    [
      /^String should match pattern/,
      () => (field === "bg_color" ? "must be #RRGGBB, for example #1A2B3C" : "is not in the expected form"),
    ],
    [/^List should have at most (\d+) items?/, (m) => `can have at most ${number(m[1])}`],
    [/^List should have at least (\d+) items?/, (m) => `needs at least ${number(m[1])}`],
    [/^Extra inputs are not permitted/, () => "is not something this request takes"],
    [/^Value error, (.+)$/, (m) => `: ${m[1]}`],
  ];
  for (const [pattern, words] of rules) {
    const match = pattern.exec(message);
    if (match) {
      const said = words(match);
      return sentence(said.startsWith(":") ? `${label}${said}` : `${label} ${said}`);
    }
  }
  return sentence(`${label}: ${message}`);
}

/** "in 40 seconds", "in about 3 minutes", "after 14:05". */
export function retryWhen(seconds) {
  const value = Number(seconds);
  if (!Number.isFinite(value) || value <= 0) return "";
  if (value < 90) return `in ${Math.max(1, Math.round(value))} seconds`;
  if (value < 3600) return `in about ${Math.round(value / 60)} minutes`;
  const at = new Date(Date.now() + value * 1000);
  return `after ${at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`;
}

/**
 * What a person reads for a refused request: `{message, fields}` where `fields` maps each
 * field the API named to its own sentence (for the form's error lines).
 */
export function humanize(status, data, retryAfter = null) {
  const raw = typeof data?.message === "string" && data.message ? data.message : "";
  const fields = {};
  if (status === 422) {
    const problems = Array.isArray(data?.errors) && data.errors.length ? data.errors : [raw];
    const sentences = problems.map((text, index) => {
      const match = /^([A-Za-z0-9_.]+): /.exec(String(text));
      const field = match?.[1] ?? (index === 0 ? data?.field : null);
      const words = humanizeProblem(field, text);
      if (field && !fields[field]) fields[field] = words;
      return words;
    });
    return { message: [...new Set(sentences)].join(" "), fields };
  }
  const when = retryWhen(retryAfter);
  if (status === 429) {
    const base = sentence(raw || "Too many requests");
    const told = /\bnext at\b|\bresumes at\b|\btry again\b/i.test(base);
    return { message: when && !told ? `${base} Try again ${when}.` : base, fields };
  }
  if (status === 503) {
    const base = sentence(raw || "The service is busy");
    const told = /\bresumes at\b|\bnext at\b|\btry again\b/i.test(base);
    return { message: told ? base : `${base} Try again ${when || "in a minute"}.`, fields };
  }
  if (status === 409 && raw) {
    // A state that forbids the action, said by the API for people (a cancel of work already
    // paid for, a reference deleted after its jobs): one sentence.
    return { message: sentence(raw), fields };
  }
  if (data?.field && raw) fields[data.field] = raw;
  return { message: raw, fields };
}
