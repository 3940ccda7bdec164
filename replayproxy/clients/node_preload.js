'use strict';
// replayproxy: send Node's http/https modules and global fetch through HTTP(S)_PROXY.
//
// Node before 24 (22.21 for the backport) ignores the proxy variables. Loaded with
// NODE_OPTIONS=--require <this file>, it makes every http.Agent and https.Agent (the
// global ones and those an SDK makes itself, e.g. new https.Agent({keepAlive: true}))
// open a CONNECT tunnel through the proxy, and gives fetch a dispatcher that does the
// same. Hosts in NO_PROXY go direct. It does nothing when the proxy variables are unset
// or when Node honours NODE_USE_ENV_PROXY itself, and loads nothing until a request is
// made (undici, behind fetch, loads on the first fetch call).
(function replayproxyPreload() {
  const env = process.env;
  const [major, minor] = process.versions.node.split('.').map(Number);
  const native = major > 24 || (major === 24 && minor >= 5) || (major === 22 && minor >= 21);
  if (native && env.NODE_USE_ENV_PROXY === '1') return;
  if (globalThis[Symbol.for('replayproxy.preload')]) return;
  globalThis[Symbol.for('replayproxy.preload')] = true;

  const net = require('net');
  const tls = require('tls');
  const http = require('http');
  const https = require('https');

  function proxyFor(secure, host, port) {
    const url = secure ? (env.HTTPS_PROXY || env.https_proxy)
      : (env.HTTP_PROXY || env.http_proxy);
    if (!url || bypassed(host, port)) return null;
    let parsed;
    try {
      parsed = new URL(url.includes('://') ? url : `http://${url}`);
    } catch (e) {
      return null;
    }
    if (parsed.protocol !== 'http:') return null;
    // a client that speaks to the proxy itself (axios and others that read HTTP_PROXY)
    const proxyHost = parsed.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const bare = String(host).replace(/^\[|\]$/g, '').toLowerCase();
    if (bare === proxyHost && Number(port) === (Number(parsed.port) || 80)) return null;
    return parsed;
  }

  function bypassed(host, port) {
    const list = env.NO_PROXY !== undefined ? env.NO_PROXY : (env.no_proxy || '');
    const name = String(host).toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');
    for (let entry of list.split(/[\s,]+/)) {
      entry = entry.trim().toLowerCase();
      if (!entry) continue;
      if (entry === '*') return true;
      let entryPort = null;
      const m = /^(.*):(\d+)$/.exec(entry);
      if (m && !m[1].includes(':') || (m && m[1].startsWith('['))) {
        entry = m[1];
        entryPort = Number(m[2]);
      }
      entry = entry.replace(/^\[|\]$/g, '').replace(/^\*?\./, '');
      if (entryPort !== null && entryPort !== Number(port)) continue;
      if (name === entry || name.endsWith(`.${entry}`)) return true;
    }
    return false;
  }

  // A socket to host:port through the proxy's CONNECT tunnel, given to cb(err, socket).
  function tunnel(proxy, host, port, cb) {
    const bare = String(host).replace(/^\[|\]$/g, '');
    const authority = bare.includes(':') ? `[${bare}]:${port}` : `${bare}:${port}`;
    const socket = net.connect({ host: proxy.hostname.replace(/^\[|\]$/g, ''),
                                 port: Number(proxy.port) || 80 });
    let head = Buffer.alloc(0);
    let done = false;
    function finish(err) {
      if (done) return;
      done = true;
      socket.removeListener('readable', onReadable);
      socket.removeListener('error', finish);
      socket.removeListener('close', onClose);
      if (err) {
        socket.destroy();
        cb(err);
      } else {
        cb(null, socket);
      }
    }
    function onClose() {
      finish(new Error(`proxy ${proxy.host} closed the connection to CONNECT ${authority}`));
    }
    function onReadable() {
      let chunk;
      while (!done && (chunk = socket.read()) !== null) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) continue;
        const statusLine = head.toString('latin1', 0, head.indexOf('\r\n'));
        const rest = head.subarray(end + 4);
        if (!/^HTTP\/1\.[01] 2\d\d/.test(statusLine)) {
          finish(new Error(`proxy ${proxy.host} refused CONNECT ${authority}: ${statusLine}`));
          return;
        }
        if (rest.length) socket.unshift(rest);
        finish(null);
      }
    }
    let auth = '';
    if (proxy.username) {
      const cred = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
      auth = `Proxy-Authorization: Basic ${Buffer.from(cred).toString('base64')}\r\n`;
    }
    socket.on('readable', onReadable);
    socket.once('error', finish);
    socket.once('close', onClose);
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`);
  }

  function serverName(host) {
    const bare = String(host).replace(/^\[|\]$/g, '');
    return net.isIP(bare) ? undefined : bare;
  }

  // -- http and https modules: every Agent ----------------------------------------------

  const httpsCreate = https.Agent.prototype.createConnection;
  https.Agent.prototype.createConnection = function createConnection(options, cb) {
    const host = options.host || options.hostname || 'localhost';
    const port = options.port || 443;
    const proxy = typeof cb === 'function' && !options.socket && proxyFor(true, host, port);
    if (!proxy) return httpsCreate.apply(this, arguments);
    tunnel(proxy, host, port, (err, socket) => {
      if (err) return cb(err);
      const servername = options.servername || serverName(host);
      cb(null, httpsCreate.call(this, { ...options, socket, servername }));
    });
    return undefined;
  };

  const httpCreate = http.Agent.prototype.createConnection;
  http.Agent.prototype.createConnection = function createConnection(options, cb) {
    const host = options.host || options.hostname || 'localhost';
    const port = options.port || 80;
    const proxy = typeof cb === 'function' && !options.socketPath && proxyFor(false, host, port);
    if (!proxy) return httpCreate.apply(this, arguments);
    tunnel(proxy, host, port, cb);
    return undefined;
  };

  // -- fetch (undici): a global dispatcher, installed on the first call ---------------

  const dispatcherKey = Symbol.for('undici.globalDispatcher.1');
  const originalFetch = globalThis.fetch;
  if (typeof originalFetch !== 'function') return;

  function connect(opts, cb) {
    const secure = opts.protocol === 'https:';
    const host = opts.hostname;
    const port = Number(opts.port) || (secure ? 443 : 80);
    const proxy = proxyFor(secure, host, port);
    const opened = (err, socket) => {
      if (err) return cb(err);
      if (!secure) return cb(null, socket);
      const servername = opts.servername || serverName(host);
      const tlsSocket = tls.connect({ socket, host: String(host).replace(/^\[|\]$/g, ''),
                                      servername, ALPNProtocols: ['http/1.1'] });
      tlsSocket.once('secureConnect', () => cb(null, tlsSocket));
      tlsSocket.once('error', (e) => cb(e));
    };
    if (proxy) return tunnel(proxy, host, port, opened);
    const bare = String(host).replace(/^\[|\]$/g, '');
    const socket = net.connect({ host: bare, port });
    socket.once('connect', () => { socket.removeAllListeners('error'); opened(null, socket); });
    socket.once('error', (e) => cb(e));
    return undefined;
  }

  let installed = false;
  function install() {
    installed = true;
    originalFetch('data:,').catch(() => {}); // loads undici, which sets its Agent
    const current = globalThis[dispatcherKey];
    if (!current || current.constructor.name !== 'Agent') return; // the program chose one
    const Agent = current.constructor;
    const agent = new Agent({ connect });
    globalThis[dispatcherKey] = agent; // undici made it writable, not configurable
  }

  globalThis.fetch = function fetch(input, init) {
    if (!installed) install();
    return originalFetch(input, init);
  };
})();
