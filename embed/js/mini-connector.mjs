// A tiny stand-in for the connector (loopback only), for example.mjs when no
// `relay-connector` is running: answers each `hello` with a descriptor,
// then sends one inbound message, answers every `outbound` with success and
// acknowledges `going_idle`.
// It is a test peer, not an emulator: the real one is `relay-connector`.
import { WebSocketServer } from 'ws';

export function startMiniConnector({ port = 0, log = () => {} } = {}) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port, path: '/relay' });
  let results = 0;
  wss.on('connection', (socket, request) => {
    log(`connector: connection (Authorization ${request.headers.authorization ? 'present' : 'absent'})`);
    const write = (frame) => socket.send(`${JSON.stringify(frame)}\n`);
    let buffered = '';
    socket.on('message', (data) => {
      buffered += data.toString('utf8');
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const frame = JSON.parse(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
        log(`connector: got ${frame.type}`);
        if (frame.type === 'hello') {
          write({
            type: 'descriptor',
            descriptor: {
              contract_version: 1,
              platform: frame.platform,
              label: 'Mini',
              max_message_length: 2000,
              supports_draft_streaming: false,
              supports_edit: true,
              supports_threads: false,
              markdown_dialect: 'markdown',
              len_unit: 'chars',
              supported_ops: ['send', 'edit', 'typing', 'follow_up'],
            },
          });
          write({
            type: 'inbound',
            bufferId: 'b1',
            event: {
              text: 'hello from the connector',
              message_type: 'text',
              message_id: 'm1',
              source: { platform: frame.platform, chat_id: 'c1', chat_type: 'dm', user_id: 'u1', user_name: 'amy' },
            },
          });
        } else if (frame.type === 'going_idle') {
          write({ type: 'going_idle_ack' });
        } else if (frame.type === 'outbound') {
          results += 1;
          write({ type: 'outbound_result', requestId: frame.requestId, result: { success: true, message_id: `m${results + 1}` } });
        }
      }
    });
  });
  return new Promise((resolve, reject) => {
    wss.once('error', reject);
    wss.once('listening', () =>
      resolve({
        base: `ws://127.0.0.1:${wss.address().port}`,
        close: () => new Promise((done) => wss.close(done)),
      }),
    );
  });
}
