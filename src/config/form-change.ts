// A config rule that needs the running config: the form of the pod list.
import type { MeshConfig } from './model.js';

/**
 * A version that would turn a running agent's listed pods into the single-pod form (the whole
 * --cgroup as one pod), as a config problem: a file cut short loses its `pods:` and would mesh a
 * cgroup that no pod lists. Starting an agent with such a file is how that form is asked for.
 */
export function formChange(running: MeshConfig | undefined, next: MeshConfig, cgroup: string): { path: string; message: string } | undefined {
  const listed = (c: MeshConfig) => c.pods.length > 0 || c.podsOnly === true;
  if (!running || !listed(running) || listed(next)) return undefined;
  return {
    path: 'pods',
    message: `this version lists no pods, the applied one lists ${running.pods.length}: applied, it would mesh all of ${cgroup} as one pod. `
      + 'List the pods (was the file cut short?); to mesh the whole --cgroup as one pod, restart the agent with such a file',
  };
}
