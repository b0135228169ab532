// A JSON Schema written as the TypeScript-like type harmony describes function parameters with
// (openai/harmony: `type get_weather = (_: { location: string, unit?: "c" | "f" }) => any;`).
// Descriptions become `//` lines above a property, defaults a trailing comment; what TypeScript
// cannot say simply is `any`.
type Schema = Record<string, unknown>;

const literal = (v: unknown) => JSON.stringify(v);

/** The type of `s`; nested objects are indented by `indent`. */
export function schemaType(s: unknown, indent: string): string {
  if (s === null || typeof s !== 'object') return 'any';
  const o = s as Schema;
  if ('const' in o) return literal(o.const);
  if (Array.isArray(o.enum)) return o.enum.map(literal).join(' | ');
  const union = (o.anyOf ?? o.oneOf) as unknown[] | undefined;
  if (Array.isArray(union)) return union.map((u) => schemaType(u, indent)).join(' | ');
  if (Array.isArray(o.type)) return (o.type as string[]).map((t) => schemaType({ ...o, type: t }, indent)).join(' | ');
  switch (o.type) {
    case 'string': return 'string';
    case 'number': case 'integer': return 'number';
    case 'boolean': return 'boolean';
    case 'null': return 'null';
    case 'array': {
      const item = schemaType(o.items, indent);
      return /[ |]/.test(item) && !item.startsWith('{') ? `Array<${item}>` : `${item}[]`;
    }
    case 'object': case undefined: {
      const props = o.properties as Record<string, unknown> | undefined;
      if (!props || Object.keys(props).length === 0) return o.type === 'object' ? 'object' : 'any';
      const required = new Set((o.required as string[] | undefined) ?? []);
      const lines = Object.entries(props).map(([name, p]) => {
        const ps = (p ?? {}) as Schema;
        const desc = typeof ps.description === 'string' ? ps.description.split('\n').map((l) => `${indent}// ${l}\n`).join('') : '';
        const def = ps.default !== undefined ? ` // default: ${typeof ps.default === 'string' ? ps.default : literal(ps.default)}` : '';
        return `${desc}${indent}${name}${required.has(name) ? '' : '?'}: ${schemaType(ps, indent + '  ')},${def}`;
      });
      return `{\n${lines.join('\n')}\n${indent.slice(0, Math.max(0, indent.length - 2))}}`;
    }
    default: return 'any';
  }
}
