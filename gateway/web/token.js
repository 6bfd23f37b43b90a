// The access token: taken from `#token=` (then dropped from the address bar, so it does not end
// up in bookmarks or screenshots), or pasted into the sign-in form; kept in sessionStorage so it
// lives only as long as the tab.

const TOKEN_KEY = "coach.token";

export function takeToken() {
  const params = new URLSearchParams(location.hash.slice(1));
  const fromUrl = params.get("token");
  if (fromUrl) {
    saveToken(fromUrl);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  return readToken();
}

export function readToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

export function saveToken(token) {
  try {
    sessionStorage.setItem(TOKEN_KEY, token.trim());
  } catch {
    /* storage disabled */
  }
}

export function clearToken() {
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled */
  }
}

/** The token's claims, unverified (for display only: the server decides). Null if not a JWT. */
export function claimsOf(token) {
  const part = (token || "").split(".")[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(part.length / 4) * 4, "="));
    const claims = JSON.parse(json);
    return claims && typeof claims === "object" ? claims : null;
  } catch {
    return null;
  }
}

export function hasRole(claims, role) {
  const roles = claims?.roles;
  if (Array.isArray(roles)) return roles.includes(role);
  return typeof roles === "string" && roles.split(/\s+/).includes(role);
}

/** Milliseconds until the token expires (negative when it has), or null without `exp`. */
export function msUntilExpiry(claims) {
  return typeof claims?.exp === "number" ? claims.exp * 1000 - Date.now() : null;
}
