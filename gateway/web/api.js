// fetch() against the gateway's REST surface with the bearer token, mapping every failure to an
// ApiFailure with the gateway's `{error: {code, message}}` when there is one.

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function getJson(path, token, { signal } = {}) {
  return requestJson("GET", path, token, { signal });
}

/** A write (PUT, POST) with an optional JSON body; answers the parsed JSON reply. */
export function sendJson(method, path, token, body, { signal } = {}) {
  return requestJson(method, path, token, { body, signal });
}

async function requestJson(method, path, token, { body, signal } = {}) {
  const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      signal,
    });
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiFailure(0, "network", "the gateway could not be reached");
  }
  if (response.ok) return response.json();
  let code = `http_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    code = body?.error?.code || code;
    message = body?.error?.message || message;
  } catch {
    /* not JSON */
  }
  throw new ApiFailure(response.status, code, message);
}
