// The mesh CA's material in a directory (the file source's): Istio's plug-in CA file names. A
// directory without them gets a new self-signed root, the key readable by root only; one with
// part of them is an error that says which file is missing.
import { existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Codes, UserError } from '../errors.js';
import { selfSignedRoot, type CaMaterial, type CaStore } from './ca.js';

const FILES = { rootCerts: 'root-cert.pem', caCert: 'ca-cert.pem', caKey: 'ca-key.pem', certChain: 'cert-chain.pem' } as const;

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  renameSync(tmp, path);
}

export class FileCaStore implements CaStore {
  constructor(private readonly dir: string, private readonly onCreated: (dir: string) => void = () => undefined) {}

  get description(): string {
    return `CA directory ${this.dir}`;
  }

  async load(trustDomain: string): Promise<CaMaterial> {
    const present = Object.values(FILES).filter((f) => existsSync(join(this.dir, f)));
    if (!present.length) {
      const m = selfSignedRoot(trustDomain);
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      writeAtomic(join(this.dir, FILES.caKey), m.caKey, 0o600);
      writeAtomic(join(this.dir, FILES.caCert), m.caCert, 0o644);
      writeAtomic(join(this.dir, FILES.certChain), m.certChain, 0o644);
      writeAtomic(join(this.dir, FILES.rootCerts), m.rootCerts, 0o644);
      this.onCreated(this.dir);
      return m;
    }
    for (const f of [FILES.rootCerts, FILES.caCert, FILES.caKey]) {
      if (!present.includes(f)) throw new UserError(Codes.CONFIG_READ, `${this.dir} holds ${present.join(', ')} but not ${f}: a CA directory needs root-cert.pem, ca-cert.pem and ca-key.pem (cert-chain.pem for an intermediate), or none of them for a new self-signed root`);
    }
    const keyMode = statSync(join(this.dir, FILES.caKey)).mode & 0o077;
    if (keyMode) throw new UserError(Codes.CONFIG_READ, `${join(this.dir, FILES.caKey)} can be read by other users (mode ${(statSync(join(this.dir, FILES.caKey)).mode & 0o777).toString(8)}): chmod 600 it`);
    const read = (f: string) => readFileSync(join(this.dir, f), 'utf8');
    return { rootCerts: read(FILES.rootCerts), caCert: read(FILES.caCert), caKey: read(FILES.caKey), certChain: existsSync(join(this.dir, FILES.certChain)) ? read(FILES.certChain) : '' };
  }
}
