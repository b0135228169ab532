"""Harmony goldens for test/29-server-harmony from openai-harmony (OpenAI's own renderer and parser).

openai-harmony downloads o200k_base.tiktoken at run time; offline, make it from the npm package
js-tiktoken's ranks (the file's sha256 is what openai-harmony checks) and point
TIKTOKEN_ENCODINGS_BASE at its folder (tools/harmony/README.md). Writes
test/fixtures/goldens/harmony.json: each case's messages, options and rendered text, and model
outputs (o200k_harmony token ids with each token's text, the EOS left off as the engine does)
with the messages openai-harmony parses from them.
"""
import json
import os
import sys

from openai_harmony import (Author, Conversation, DeveloperContent, HarmonyEncodingName, Message, ReasoningEffort, Role,
                            SystemContent, ToolDescription, load_harmony_encoding)

DATE = "2026-12-07"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city.", "parameters": {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Paris"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
        "days": {"type": "array", "items": {"type": "integer"}},
    },
    "required": ["city"],
}}}
NOW = {"type": "function", "function": {"name": "now", "description": "The time now."}}
EFFORT = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}

CASES = [
    {"name": "tools, a call and its result", "effort": "high", "tools": [WEATHER, NOW], "messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "reasoning_content": "I should call the tool.",
         "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\":21}"},
    ]},
    {"name": "turns without tools", "effort": "medium", "tools": [], "messages": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]},
    {"name": "instructions only", "effort": "low", "tools": [], "messages": [
        {"role": "system", "content": "Speak French."},
        {"role": "user", "content": "Bonjour"},
    ]},
]


def conversation(case):
    system = SystemContent.new().with_reasoning_effort(EFFORT[case["effort"]]).with_conversation_start_date(DATE)
    msgs = [Message.from_role_and_content(Role.SYSTEM, system)]
    instructions = [m["content"] for m in case["messages"] if m["role"] in ("system", "developer")]
    if instructions or case["tools"]:
        dev = DeveloperContent.new()
        if instructions:
            dev = dev.with_instructions("\n\n".join(instructions))
        if case["tools"]:
            dev = dev.with_function_tools([ToolDescription.new(t["function"]["name"], t["function"].get("description", ""),
                                                               parameters=t["function"].get("parameters")) for t in case["tools"]])
        msgs.append(Message.from_role_and_content(Role.DEVELOPER, dev))
    names = {}
    for m in case["messages"]:
        if m["role"] == "user":
            msgs.append(Message.from_role_and_content(Role.USER, m["content"]))
        elif m["role"] == "assistant":
            if m.get("tool_calls"):
                if m.get("reasoning_content"):
                    msgs.append(Message.from_role_and_content(Role.ASSISTANT, m["reasoning_content"]).with_channel("analysis"))
                for c in m["tool_calls"]:
                    names[c["id"]] = c["function"]["name"]
                    msgs.append(Message.from_role_and_content(Role.ASSISTANT, c["function"]["arguments"]).with_channel("commentary")
                                .with_recipient("functions." + c["function"]["name"]).with_content_type("<|constrain|>json"))
            else:
                msgs.append(Message.from_role_and_content(Role.ASSISTANT, m["content"]).with_channel("final"))
        elif m["role"] == "tool":
            name = names[m["tool_call_id"]]
            msgs.append(Message.from_author_and_content(Author.new(Role.TOOL, "functions." + name), m["content"])
                        .with_channel("commentary").with_recipient("assistant"))
    return Conversation.from_messages(msgs)


# Model outputs after `<|start|>assistant`, ending on their EOS (<|return|> or <|call|>).
OUTPUTS = [
    "<|channel|>analysis<|message|>User greets. Reply politely.<|end|><|start|>assistant<|channel|>final<|message|>Hello! How can I help?<|return|>",
    "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
    "<|channel|>commentary<|message|>Checking two cities.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\":\"Oslo\"}<|call|>",
]


def parsed(enc, text):
    ids = enc.encode(text, allowed_special="all")
    messages = [m.to_dict() for m in enc.parse_messages_from_completion_tokens(ids, Role.ASSISTANT)]
    stop = set(enc.stop_tokens_for_assistant_actions())
    assert ids[-1] in stop
    ids = ids[:-1]  # the engine reports the EOS as the finish, not as a token
    return {
        "output": text,
        "tokens": [[i, enc.decode_utf8([i]) if not enc.is_special_token(i) else ""] for i in ids],
        "messages": [{"channel": m.get("channel"), "recipient": m.get("recipient"),
                      "text": "".join(c["text"] for c in m["content"])} for m in messages],
    }


def main(out):
    enc = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    goldens = []
    for case in CASES:
        tokens = enc.render_conversation_for_completion(conversation(case), Role.ASSISTANT)
        goldens.append({**case, "date": DATE, "text": enc.decode_utf8(tokens), "tokens": len(tokens)})
    vocab = {n: enc.encode(f"<|{n}|>", allowed_special="all")[0] for n in ("start", "end", "message", "channel", "constrain", "return", "call")}
    outputs = [parsed(enc, t) for t in OUTPUTS]
    with open(out, "w") as f:
        json.dump({"generator": "openai-harmony " + os.environ.get("HARMONY_VERSION", ""), "cases": goldens, "vocab": vocab, "outputs": outputs}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "test/fixtures/goldens/harmony.json")
