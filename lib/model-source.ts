// Where a target model comes from: a Hugging Face directory (config.json, *.safetensors,
// tokenizer.json, ...) or a single GGUF file (lib/gguf-model.ts). Every caller that reads a target
// (Engine.load, `dflash doctor`, `dflash serve`'s sampling defaults) goes through here, so both
// kinds are accepted everywhere a target is.
import * as fs from 'fs';
import * as path from 'path';

import { readGgufCheckpoint, readGgufDrafter } from './gguf-model';
import { isGgufFile } from './gguf';
import type { TensorSource } from './native';
import { isQwen35 } from './config-qwen3-5';
import { QuantScheme, storedQuantTensors } from './quantization';
import { readCheckpoint } from './safetensors';
import { loadTokenizer, Tokenizer, tokenizerFromJson } from './tokenizer';

type Json = Record<string, unknown>;

export interface ModelSource {
  kind: 'huggingface' | 'gguf';
  /** What errors about the config name: the config.json file, or the GGUF file's metadata. */
  configLabel: string;
  config: Json;
  /** Where every tensor lives (headers only; read when called, after the config is checked); a
   *  quantized checkpoint's under the names its scheme uploads them by (lib/quantization.ts). */
  tensors(quant?: QuantScheme | null): TensorSource[];
  /** generation_config.json (GGUF: the eos ids of its metadata). */
  generation: Json;
  tokenizer(): Promise<Tokenizer>;
  /** tokenizer.json's text: the grammar engine reads every token's bytes from it. */
  tokenizerJson(): string;
  /** Tensors of the checkpoint that are not the text model's and are left out (a vision tower, an
   *  MTP head), counted by their top-level module; set once tensors() has run. */
  skipped?: Record<string, number>;
}

function readJson(file: string): Json {
  let raw: string;
  try {
    raw = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(raw) as Json;
  } catch (e) {
    throw new Error(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** A target given as a file: a GGUF file is read as one; any other file is an error naming it. */
function isFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

/** A drafter: its config (z-lab / speculators config.json, or what a "dflash" GGUF's metadata
 *  says) and its tensors under the names lib/config-checkpoint.ts checks (no "model." prefix). */
export interface DrafterSource {
  configLabel: string;
  config: Json;
  /** A quantized drafter's under the names its scheme uploads them by (lib/quantization.ts). */
  tensors(quant?: QuantScheme | null): TensorSource[];
}

export function openDrafter(drafter: string): DrafterSource {
  if (isFile(drafter)) {
    if (!isGgufFile(drafter))
      throw new Error(`${drafter} is a file but not a GGUF file; a drafter is a Hugging Face model directory or a .gguf file`);
    const g = readGgufDrafter(drafter);
    return { configLabel: `${drafter} (GGUF metadata)`, config: g.config, tensors: () => g.tensors };
  }
  const configFile = path.join(drafter, 'config.json');
  return {
    configLabel: configFile, config: readJson(configFile),
    tensors: (quant) => {
      const raw = readCheckpoint(drafter, { quantized: !!quant }).map((t) => (t.name.startsWith('model.') ? { ...t, name: t.name.slice('model.'.length) } : t));
      return quant ? storedQuantTensors(raw, quant, configFile) : raw;
    },
  };
}

/** A vision-language checkpoint's text model (Qwen3.5 as released): its tensors under the
 *  text-only names (`model.language_model.X` -> `model.X`), the vision tower (`model.visual.*`)
 *  and the multi-token-prediction head (`mtp.*`) left out. Other checkpoints pass unchanged. */
function languageModelTensors(config: Json, skipped: Record<string, number>): (tensors: TensorSource[]) => TensorSource[] {
  if (!isQwen35(config)) return (t) => t;
  const leftOut = (t: TensorSource) => {
    const module = t.name.startsWith('model.visual.') ? 'model.visual' : t.name.startsWith('mtp.') ? 'mtp' : undefined;
    if (module) skipped[module] = (skipped[module] ?? 0) + 1;
    return module !== undefined;
  };
  return (tensors) => tensors
    .filter((t) => !leftOut(t))
    .map((t) => (t.name.startsWith('model.language_model.') ? { ...t, name: 'model.' + t.name.slice('model.language_model.'.length) } : t));
}

/** The model at `target` (a directory or a .gguf file); reads headers and metadata only. */
export function openModel(target: string): ModelSource {
  if (isFile(target)) {
    if (!isGgufFile(target))
      throw new Error(`${target} is a file but not a GGUF file; a target is a Hugging Face model directory or a .gguf file`);
    const g = readGgufCheckpoint(target);
    const label = `${target} (GGUF metadata)`;
    return {
      kind: 'gguf', configLabel: label, config: g.config, tensors: () => g.tensors, generation: g.tokenizer.generation,
      tokenizer: async () => tokenizerFromJson(g.tokenizer, { tokenizer: `${label} tokenizer`, config: label, generation: label, template: target }),
      tokenizerJson: () => JSON.stringify(g.tokenizer.tokenizer),
    };
  }
  const configFile = path.join(target, 'config.json');
  const genFile = path.join(target, 'generation_config.json');
  const config = readJson(configFile);
  const skipped: Record<string, number> = {};
  const textModel = languageModelTensors(config, skipped);
  return {
    kind: 'huggingface', configLabel: configFile, config, skipped,
    tensors: (quant) => textModel(quant ? storedQuantTensors(readCheckpoint(target, { quantized: true }), quant, configFile) : readCheckpoint(target)),
    generation: fs.existsSync(genFile) ? readJson(genFile) : {},
    tokenizer: () => loadTokenizer(target),
    tokenizerJson: () => fs.readFileSync(path.join(target, 'tokenizer.json'), 'utf8'),
  };
}
