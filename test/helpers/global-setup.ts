// Fails the run when tests left kernel or network state behind (pins, cgroups, namespaces).
import { leftovers } from './leftovers.js';

const TEST_NAME = /^(sockmesh|sm)-(t\d+|demo-|probe-|bench\d+)/;

export default function setup(): () => void {
  const before = new Set(leftovers((n) => TEST_NAME.test(n)));
  return () => {
    const after = leftovers((n) => TEST_NAME.test(n)).filter((l) => !before.has(l));
    if (after.length) throw new Error(`tests left these behind:\n  ${after.join('\n  ')}`);
  };
}
