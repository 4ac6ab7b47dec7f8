// Forms generated from a JSON schema: an action's `parameters` (the flat pack form or a full
// object schema) and an inquiry's `schema`.
//
// boolean → checkbox; string with enum (or any enum) → select; integer/number → number input;
// string → text input (password input when `secret`); object/array → a JSON textarea.
// Required fields are marked and required by the browser; descriptions describe the control.

import { h } from "./dom.js";

/**
 * Normalises a schema into {fields: [{name, spec, required}], scalar}. `scalar` is set when
 * the whole answer is one value (e.g. `{"type": "boolean"}`): the form has one field and
 * submits its value bare.
 */
export function fieldsOf(schema) {
  if (!schema || typeof schema !== "object" || Object.keys(schema).length === 0) {
    return { fields: [{ name: "value", spec: { type: "json", title: "Answer (JSON)" }, required: false }], scalar: true };
  }
  if (schema.type === "object" || schema.properties) {
    const required = new Set(Array.isArray(schema.required) ? schema.required : []);
    const props = schema.properties || {};
    return {
      fields: Object.entries(props).map(([name, spec]) => ({ name, spec: spec || {}, required: required.has(name) || spec?.required === true })),
      scalar: false,
    };
  }
  if (typeof schema.type === "string" || Array.isArray(schema.enum)) {
    return { fields: [{ name: "value", spec: { title: "Answer", ...schema }, required: true }], scalar: true };
  }
  // The flat form: {"name": {"type": ..., "required": true}, ...}
  return {
    fields: Object.entries(schema).map(([name, spec]) => ({ name, spec: spec || {}, required: spec?.required === true })),
    scalar: false,
  };
}

function typeOf(spec) {
  const t = Array.isArray(spec.type) ? spec.type.find((x) => x !== "null") : spec.type;
  if (Array.isArray(spec.enum)) return "enum";
  return t || "json";
}

/**
 * A <form> for `schema`. `onSubmit(value)` gets the answer (an object, or the bare value for
 * a scalar schema) and may throw: its message is shown in the form.
 */
export function schemaForm(schema, { id, submitLabel, onSubmit }) {
  const { fields, scalar } = fieldsOf(schema);
  const error = h("p", { class: "form-error", role: "alert", id: `${id}-error` });
  const controls = fields.map((f) => control(id, f));
  const button = h("button", { type: "submit", class: "primary", id: `${id}-submit` }, submitLabel);
  const form = h(
    "form",
    { id, class: "schema-form", novalidate: false },
    controls.map((c) => c.row),
    fields.length === 0 ? h("p", { class: "muted" }, "No parameters.") : null,
    error,
    h("div", { class: "actions" }, button),
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    let value;
    try {
      const answer = {};
      for (const c of controls) {
        const v = c.read();
        if (v !== undefined) answer[c.name] = v;
      }
      value = scalar ? answer.value : answer;
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    button.disabled = true;
    try {
      await onSubmit(value);
    } catch (err) {
      error.textContent = err.message;
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function control(formId, { name, spec, required }) {
  const id = `${formId}-${name}`;
  const type = typeOf(spec);
  const hintId = spec.description ? `${id}-hint` : undefined;
  const labelText = [spec.title || name, required ? " (required)" : ""].join("");
  const common = { id, name, "aria-describedby": hintId, required: required && type !== "boolean" };
  let input;
  let read;
  if (type === "boolean") {
    input = h("input", { ...common, type: "checkbox", checked: spec.default === true });
    read = () => input.checked;
  } else if (type === "enum") {
    const options = spec.enum.map((v, i) => h("option", { value: String(i), selected: spec.default === v }, String(v)));
    const blank = required && spec.default !== undefined ? null : h("option", { value: "" }, "—");
    input = h("select", common, blank, options);
    read = () => (input.value === "" ? undefined : spec.enum[Number(input.value)]);
  } else if (type === "integer" || type === "number") {
    input = h("input", {
      ...common,
      type: "number",
      inputmode: type === "integer" ? "numeric" : "decimal",
      step: type === "integer" ? "1" : "any",
      min: spec.minimum,
      max: spec.maximum,
      value: spec.default !== undefined ? String(spec.default) : undefined,
    });
    read = () => {
      if (input.value === "") return undefined;
      const n = Number(input.value);
      if (Number.isNaN(n)) throw new Error(`${name}: not a number`);
      return n;
    };
  } else if (type === "string") {
    input = h("input", {
      ...common,
      type: spec.secret ? "password" : "text",
      autocomplete: spec.secret ? "new-password" : "off",
      value: spec.default !== undefined ? String(spec.default) : undefined,
    });
    read = () => (input.value === "" && !required ? undefined : input.value);
  } else {
    // object, array or anything the generator has no control for: JSON text.
    input = h("textarea", { ...common, rows: "4", spellcheck: "false", class: "mono" }, spec.default !== undefined ? JSON.stringify(spec.default, null, 2) : "");
    read = () => {
      if (input.value.trim() === "") return undefined;
      try {
        return JSON.parse(input.value);
      } catch {
        throw new Error(`${name}: not valid JSON`);
      }
    };
  }
  const label = h("label", { for: id }, labelText);
  const row =
    type === "boolean"
      ? h("div", { class: "field check" }, input, label, hintId ? h("small", { id: hintId }, spec.description) : null)
      : h("div", { class: "field" }, label, input, hintId ? h("small", { id: hintId }, spec.description) : null);
  return { name, row, read };
}
