export async function cmdDemo(_argv: string[]): Promise<void> { throw new Error('not yet'); }
