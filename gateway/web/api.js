// fetch() against the gateway's REST surface with the bearer token, mapping every failure to an
// ApiFailure with the gateway's `{error: {code, message}}` when there is one.

export class ApiFailure extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function getJson(path, token, { signal } = {}) {
  let response;
  try {
    response = await fetch(path, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
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
