/** Node modules the browser bundle reaches but never calls (identity files on disk). */
export const homedir = (): string => '/';
export const join = (...parts: string[]): string => parts.join('/');
const unavailable = async (): Promise<never> => {
  throw new Error('no file system in the browser');
};
export const mkdir = unavailable;
export const readFile = unavailable;
export const writeFile = unavailable;
export const chmod = unavailable;
export const stat = unavailable;
export default {};
