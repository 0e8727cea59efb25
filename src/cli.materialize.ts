export async function cmdMaterialize(_argv: string[]): Promise<void> { throw new Error('not yet'); }
