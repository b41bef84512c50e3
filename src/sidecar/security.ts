// The governance sidecar's share of the mesh's security, rendered into HAProxy's configuration
// (pure: the workload's policy in, config lines and a Lua file out).
//
// Inbound (15006), one TCP listener for every mode, as Istio's PeerAuthentication has them per
// port: the first bytes are inspected; a TLS ClientHello offering ALPN "sockmesh" (what sidecars
// send) is mesh mTLS and goes over a unix socket, with the original destination in a PROXY v2
// header, to a second listener that terminates it (`verify required` against the mesh's trust
// bundle), reads the peer's SPIFFE ID from its certificate (a Lua action: HAProxy 2.6 has no
// fetch for a URI SAN) and then routes as the plaintext listener does. On a STRICT port anything
// else is refused; on a PERMISSIVE port it reaches the app as it came (plaintext, or TLS the app
// terminates itself); on a DISABLE port nothing is terminated. Authorization (Istio's
// AuthorizationPolicy) is a second Lua action, in the backends to the app: per connection in the
// TCP one (a denied connection is closed), per request in the HTTP services' (403). Every inbound
// connection reaches the app through one of them.
//
// Outbound (15001), auto mTLS: a connection to a meshed workload's address (a service's endpoint
// or the workload itself) is TLS with the pod's certificate, verifying that the server's
// certificate carries the identity expected of that address (HAProxy checks the DNS form of the
// identity, see dnsIdOf, during the handshake); never to a port where that workload takes
// plaintext only.
import type { AuthorizationPolicy, AuthorizationRule, Endpoint, MtlsMode, ServiceConfig } from '../config/model.js';
import { speaksMtls, type PeerTarget, type WorkloadPolicy } from '../config/workload.js';
import { MESH_ALPN } from '../config/constants.js';

/** The workload's policy and where the sidecar keeps its identity. */
export interface SidecarSecurity {
  workload: WorkloadPolicy;
  /** The pod's certificate chain and key (PEM, 0600); absent until the agent handed them out. */
  certFile?: string;
  /** The mesh's trust bundle (PEM). */
  rootsFile: string;
  luaFile: string;
  /** The unix socket between the inbound listener and the mTLS one. */
  mtlsSocket: string;
  /** The uid HAProxy's workers run as (they connect to the socket). */
  uid?: number;
}

const MTLS = '{ var(sess.sm_tls) -m str mtls }';
const DENIED = '{ var(txn.sm_authz) -m beg deny }';

function portsAcl(ports: number[]): string {
  return `{ dst_port ${ports.join(' ')} }`;
}

/** A condition that holds on the ports whose mode is one of `modes` (undefined: none; '': every port). */
function portsWhere(m: { mode: MtlsMode; ports: Array<{ port: number; mode: MtlsMode }> }, modes: MtlsMode[]): string | undefined {
  const other = m.ports.filter((p) => modes.includes(p.mode) !== modes.includes(m.mode)).map((p) => p.port);
  if (modes.includes(m.mode)) return other.length ? `!${portsAcl(other)}` : '';
  return other.length ? portsAcl(other) : undefined;
}

/** Whether this workload's sidecar needs a certificate at all (some port takes mTLS, or some peer does). */
export function needsIdentity(w: WorkloadPolicy): boolean {
  const takes = (m: { mode: MtlsMode; ports: Array<{ mode: MtlsMode }> }) => m.mode !== 'DISABLE' || m.ports.some((p) => p.mode !== 'DISABLE');
  return takes(w.mtls) || w.peers.some(takes);
}

/** The inbound listener's rules before it routes: mTLS detection, STRICT refusals, TCP authorization. */
export function inboundSecurityLines(sec: SidecarSecurity): string[] {
  const m = sec.workload.mtls;
  const lines: string[] = [];
  const tlsPorts = portsWhere(m, ['STRICT', 'PERMISSIVE']);
  if (sec.certFile && tlsPorts !== undefined) {
    lines.push(
      '  tcp-request inspect-delay 1s',
      `  tcp-request content set-var(sess.sm_tls) str(mtls) if { req.ssl_hello_type 1 } { req.ssl_alpn -m str ${MESH_ALPN} }${tlsPorts ? ` ${tlsPorts}` : ''}`,
      // Logged by the mTLS listener, which sees the peer.
      `  tcp-request content set-log-level silent if ${MTLS}`,
    );
  }
  const strict = portsWhere(m, ['STRICT']);
  if (strict !== undefined) lines.push(`  tcp-request content reject if !${MTLS}${strict ? ` ${strict}` : ''}`);
  if (sec.certFile && tlsPorts !== undefined) lines.push(`  use_backend to_mtls if ${MTLS}`);
  return lines;
}

/** Authorization per connection: in the backend to the app that every connection not going to an HTTP service's backend takes (those decide per request). */
export function tcpAuthzLines(sec: SidecarSecurity | undefined): string[] {
  if (!sec?.workload.authorization.length) return [];
  return ['  tcp-request content lua.sm_authz tcp', `  tcp-request content reject if ${DENIED}`];
}

/** The listener that terminates mesh mTLS, and the backend that hands connections to it. */
export function mtlsListener(sec: SidecarSecurity, logFormat: string, routes: string[]): string[] {
  if (!sec.certFile) return [];
  const owner = sec.uid !== undefined ? ` uid ${sec.uid}` : '';
  return [
    'frontend inbound_mtls',
    `  bind unix@${sec.mtlsSocket} mode 600${owner} accept-proxy ssl crt ${sec.certFile} ca-file ${sec.rootsFile} verify required alpn ${MESH_ALPN}`,
    '  mode tcp',
    `  log-format '${logFormat}'`,
    // A connection refused before it carried data (authorization, per connection) is logged too.
    '  no option dontlognull',
    '  tcp-request content set-var(sess.sm_tls) str(mtls)',
    '  tcp-request content lua.sm_peer',
    ...routes,
    '  default_backend inbound_app',
    'backend to_mtls',
    '  mode tcp',
    `  server mtls unix@${sec.mtlsSocket} send-proxy-v2`,
  ];
}

/** An HTTP service's per-request authorization (its inbound backend). */
export function httpAuthzLines(sec: SidecarSecurity | undefined): string[] {
  if (!sec?.workload.authorization.length) return [];
  return ['  http-request lua.sm_authz http', `  http-request deny deny_status 403 if ${DENIED}`];
}

/** The meshed workload at an address, if any. */
function peerAt(sec: SidecarSecurity, address: string): PeerTarget | undefined {
  return sec.workload.peers.find((p) => p.addresses.includes(address));
}

function tlsOptions(sec: SidecarSecurity, peer: PeerTarget): string[] {
  return ['ssl', 'crt', sec.certFile!, 'ca-file', sec.rootsFile, 'verify', 'required', 'verifyhost', peer.dnsId, 'alpn', MESH_ALPN];
}

/** A service endpoint's TLS options: mTLS when it is a meshed workload that takes it on that port. */
export function endpointTls(sec: SidecarSecurity | undefined, e: Endpoint, s: ServiceConfig): string[] {
  if (!sec?.certFile) return [];
  const peer = peerAt(sec, e.address);
  return peer && speaksMtls(peer, e.port || s.ports[0]) ? tlsOptions(sec, peer) : [];
}

/** Connections to a meshed workload's own address (no service of the config): routed to a backend that speaks mTLS to it. */
export function peerRoutes(sec: SidecarSecurity | undefined): { rules: string[]; backends: string[] } {
  if (!sec?.certFile) return { rules: [], backends: [] };
  const rules: string[] = [];
  const backends: string[] = [];
  sec.workload.peers.forEach((p, i) => {
    const ports = portsWhere(p, ['STRICT', 'PERMISSIVE']);
    if (ports === undefined) return;
    rules.push(`  use_backend peer_${i} if { dst ${p.addresses.join(' ')} }${ports ? ` ${ports}` : ''}`);
    backends.push(`backend peer_${i}`, '  mode tcp', `  # ${p.spiffeId}`, `  server orig 0.0.0.0:0 ${tlsOptions(sec, p).join(' ')}`);
  });
  return { rules, backends };
}

/** A Lua string literal: every byte outside a safe set as a decimal escape. */
function luaString(v: string): string {
  // Three digits always: `\37` followed by a digit would read as one larger escape.
  return `"${[...Buffer.from(v, 'utf8')].map((b) => (/[A-Za-z0-9 ./:_*-]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : `\\${String(b).padStart(3, '0')}`)).join('')}"`;
}

function luaList(v: Array<string | number> | undefined): string {
  return v === undefined ? 'nil' : `{ ${v.map((x) => luaString(String(x))).join(', ')} }`;
}

const HTTP_FIELDS = ['methods', 'notMethods', 'paths', 'notPaths'] as const;

function luaRule(r: AuthorizationRule): string {
  const httpOnly = r.to.some((o) => HTTP_FIELDS.some((f) => o[f] !== undefined));
  const from = r.from.map((f) => `{ principals = ${luaList(f.principals)}, notPrincipals = ${luaList(f.notPrincipals)}, namespaces = ${luaList(f.namespaces)}, notNamespaces = ${luaList(f.notNamespaces)} }`);
  const to = r.to.map((o) => `{ ports = ${luaList(o.ports)}, notPorts = ${luaList(o.notPorts)}, methods = ${luaList(o.methods)}, notMethods = ${luaList(o.notMethods)}, paths = ${luaList(o.paths)}, notPaths = ${luaList(o.notPaths)} }`);
  return `{ httpOnly = ${httpOnly}, from = { ${from.join(', ')} }, to = { ${to.join(', ')} } }`;
}

function luaPolicies(ps: AuthorizationPolicy[]): string {
  // DENY policies are looked at first: a DENY beats an ALLOW.
  const ordered = [...ps.filter((p) => p.action === 'DENY'), ...ps.filter((p) => p.action === 'ALLOW')];
  return `{\n${ordered.map((p) => `  { name = ${luaString(`${p.namespace}/${p.name}`)}, action = "${p.action}", rules = { ${p.rules.map(luaRule).join(', ')} } },`).join('\n')}\n}`;
}

/** The Lua file: the peer's identity from its certificate, and Istio's authorization semantics over this workload's policies. */
export function renderLua(sec: SidecarSecurity): string {
  return `-- sockmesh governance sidecar: peer identity and authorization (rendered; do not edit)
local POLICIES = ${luaPolicies(sec.workload.authorization)}
${LUA_CODE}`;
}

// The peer's SPIFFE ID is the certificate's URI SAN: the subjectAltName extension (OID 2.5.29.17)
// is found in the DER HAProxy hands over (ssl_c_der: a certificate the mesh CA issued, already
// verified) and its GeneralNames walked for uniformResourceIdentifier [6].
const LUA_CODE = String.raw`
local function der_len(s, i)
  local b = s:byte(i)
  if b == nil then return 0, i end
  if b < 0x80 then return b, i + 1 end
  local len = 0
  for k = 1, b - 0x80 do len = len * 256 + (s:byte(i + k) or 0) end
  return len, i + 1 + (b - 0x80)
end

local function uri_san(der)
  local at = der:find("\6\3\85\29\17", 1, true)
  if not at then return nil end
  local i = at + 5
  if der:byte(i) == 0x01 then i = i + 3 end
  if der:byte(i) ~= 0x04 then return nil end
  local _, j = der_len(der, i + 1)
  if der:byte(j) ~= 0x30 then return nil end
  local n, k = der_len(der, j + 1)
  local stop = k + n
  while k < stop do
    local tag = der:byte(k)
    local l, v = der_len(der, k + 1)
    if tag == 0x86 then
      local uri = der:sub(v, v + l - 1)
      if uri:sub(1, 9) == "spiffe://" then return uri:sub(10) end
    end
    k = v + l
  end
  return nil
end

core.register_action("sm_peer", { "tcp-req" }, function(txn)
  local der = txn.f:ssl_c_der()
  local p = der and uri_san(der)
  if p then
    txn:set_var("sess.sm_peer", p)
    local ns = p:match("/ns/([^/]+)/sa/")
    if ns then txn:set_var("sess.sm_ns", ns) end
  end
end, 0)

-- Istio's patterns: exact, "prefix*", "*suffix", "*" (present). No value (a plaintext peer has no
-- principal) matches no pattern.
local function match(p, v)
  if v == nil then return false end
  if p == "*" then return true end
  if p:sub(-1) == "*" then return v:sub(1, #p - 1) == p:sub(1, -2) end
  if p:sub(1, 1) == "*" then return #v >= #p - 1 and v:sub(#v - #p + 2) == p:sub(2) end
  return p == v
end

local function any(list, v)
  for _, p in ipairs(list) do if match(p, v) then return true end end
  return false
end

local function field(pos, neg, v)
  if pos and not any(pos, v) then return false end
  if neg and any(neg, v) then return false end
  return true
end

local function one_of(list, f)
  if #list == 0 then return true end
  for _, x in ipairs(list) do if f(x) then return true end end
  return false
end

-- A rule with HTTP fields on a TCP connection: an ALLOW rule never matches; a DENY rule matches on
-- its other fields (Istio's semantics: the safer side).
local function rule_matches(action, r, c)
  if not c.http and r.httpOnly and action == "ALLOW" then return false end
  return one_of(r.from, function(s)
    return field(s.principals, s.notPrincipals, c.peer) and field(s.namespaces, s.notNamespaces, c.ns)
  end) and one_of(r.to, function(o)
    if not field(o.ports, o.notPorts, c.port) then return false end
    if not c.http then return true end
    return field(o.methods, o.notMethods, c.method) and field(o.paths, o.notPaths, c.path)
  end)
end

local function decide(c)
  local allows = false
  for _, p in ipairs(POLICIES) do
    if p.action == "ALLOW" then
      allows = true
    else
      for _, r in ipairs(p.rules) do if rule_matches("DENY", r, c) then return "deny:" .. p.name end end
    end
  end
  if not allows then return "allow" end
  for _, p in ipairs(POLICIES) do
    if p.action == "ALLOW" then
      for _, r in ipairs(p.rules) do if rule_matches("ALLOW", r, c) then return "allow:" .. p.name end end
    end
  end
  return "deny:no-allow-match"
end

-- The path as Istio's policies see it (its default normalization, RFC 3986): unreserved
-- characters percent-decoded, slashes merged, "." and ".." segments resolved. The app gets the
-- request as sent; the decision is made on what it would resolve the path to.
local function normalize(p)
  p = p:gsub("%%(%x%x)", function(h)
    local c = string.char(tonumber(h, 16))
    if c:match("[%w%-%._~]") then return c end
    return "%" .. h:upper()
  end)
  p = p:gsub("/+", "/")
  local out = {}
  for seg in (p .. "/"):gmatch("([^/]*)/") do
    if seg == ".." then
      if #out > 1 then table.remove(out) end
    elseif seg ~= "." then
      table.insert(out, seg)
    end
  end
  local r = table.concat(out, "/")
  if p:sub(-1) == "/" and r:sub(-1) ~= "/" then r = r .. "/" end
  if r:sub(1, 1) ~= "/" then r = "/" .. r end
  return r
end

core.register_action("sm_authz", { "tcp-req", "http-req" }, function(txn, ctx)
  local c = { http = ctx == "http", peer = txn:get_var("sess.sm_peer"), ns = txn:get_var("sess.sm_ns"), port = tostring(txn.f:dst_port()) }
  if c.http then
    c.method = txn.f:method()
    c.path = normalize(txn.f:path() or "/")
  end
  txn:set_var("txn.sm_authz", decide(c))
end, 1)
`;
