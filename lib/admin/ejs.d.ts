// The part of ejs 7 the admin uses (the package ships no types).
declare module 'ejs' {
  interface RenderOptions {
    cache?: boolean;
    root?: string;
    views?: string[];
    async?: boolean;
  }
  const ejs: {
    renderFile(path: string, data: object, opts: RenderOptions): Promise<string>;
  };
  export default ejs;
}
