// The kernel file descriptor behind a Node socket.
import type { Socket } from 'node:net';

/** The fd of a connected net.Socket (TCP or unix; Node keeps it on the handle on Linux). */
export function socketFd(sock: Socket): number {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no file descriptor');
  return fd;
}
