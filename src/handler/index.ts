/** The handler's public face: protocol, sockets and app hosting. */
export {
  HandlerUnit, type UnitOptions, type UnitCounters, type ActiveRequest, type CompletedRequest,
  type FlowControl,
} from './unit.js';
export type { EndpointSpec } from './endpoint.js';
export { Mongrel2Socket, type Mongrel2Info } from './mongrel2-socket.js';
export { loadApp, type LoadedApp, type AppInterface } from './app-loader.js';
export { testApp } from './test-app.js';
export { M2FleetError, ProtocolError } from './errors.js';
export { parseMessage, classifyMessage } from './message.js';
export { encodeReply, encodeClose, encodeCtl } from './reply.js';
export {
  subscribe, unsubscribe, publish, broadcast,
  type PushData, type PushOptions, type PushSocket, type PushTarget,
} from './push.js';
export type { Logger, Mongrel2Message, HeaderMap } from './types.js';
export {
  type SocketListener, startSocketServer, createHttpFront,
} from './socket-servers.js';
export {
  DEFAULT_SOCKET_LIMITS, TRANSPORTS, type SocketKind, type SocketLimits, type Transport,
} from './gateway.js';
