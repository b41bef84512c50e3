// sockmesh's version, one place (the CLI's --version and the build_info metric).
export const VERSION = '0.2.0';
