#!/usr/bin/env python3
"""Renders gpt-oss's chat template (../shared/testdata/chat-templates/llama.cpp/openai-gpt-oss-120b.jinja) with
conversations that exercise the harmony format -- developer/system messages, reasoning_effort, model_identity,
builtin_tools, function tools in TypeScript-like namespace form (every parameter shape the template knows), assistant
tool calls with their earlier thinking, tool results, the training-style last turn -- using Python Jinja2 configured
like Hugging Face transformers (the environment of render_expected.py), and writes expected/harmony-renders.json for
HarmonyTemplateTests.

Usage (from the repository root):  python3 tests/OpenWeights.Tests/ChatTemplates/render_harmony_expected.py [testdata_dir]
"""
import json
import os
import sys

import jinja2

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from render_expected import BOS, EOS, FIXED_NOW, make_env  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
TESTDATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "testdata")
TEMPLATE = "llama.cpp/openai-gpt-oss-120b.jinja"
OUT = os.path.join(HERE, "expected", "harmony-renders.json")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["city"],
        },
    },
}

# every parameter shape render_typescript_type knows
KITCHEN_SINK = {
    "type": "function",
    "function": {
        "name": "search_items",
        "description": "Search the catalogue.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words to look for"},
                "limit": {"type": "integer", "default": 10},
                "min_price": {"type": "number", "nullable": True},
                "in_stock": {"type": "boolean", "default": False},
                "tags": {"type": "array", "items": {"type": "string"}},
                "scores": {"type": "array", "items": {"type": "number"}},
                "counts": {"type": "array", "items": {"type": "integer"}},
                "flags": {"type": "array", "items": {"type": "boolean"}, "nullable": True},
                "anything": {"type": "array"},
                "pairs": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}, "v": {"type": "number"}}, "required": ["k"]}},
                "filter": {"type": "object", "properties": {"field": {"type": "string"}, "op": {"type": "string", "enum": ["eq", "lt", "gt"]}}, "required": ["field", "op"]},
                "opaque": {"type": "object"},
                "either": {"oneOf": [{"type": "string", "description": "a name"}, {"type": "integer"}]},
                "shape": {"oneOf": [{"type": "object"}, {"type": "string"}]},
                "union": {"type": ["string", "number"]},
                "nickname": {"type": "string", "nullable": True},
                "mystery": {"description": "No type at all"},
            },
            "required": ["query", "tags"],
        },
    },
}

NO_PARAMS = {"type": "function", "function": {"name": "get_time", "description": "The current time.", "parameters": {"type": "object", "properties": {}}}}

CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}}
RESULT = {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 21, \"condition\": \"sunny\"}"}

CONVERSATIONS = {
    "developer_role": {
        "messages": [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hello"}],
        "add_generation_prompt": True,
    },
    "effort_low": {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}],
        "add_generation_prompt": True,
        "extra": {"reasoning_effort": "low"},
    },
    "effort_high_identity": {
        "messages": [{"role": "user", "content": "Prove it."}],
        "add_generation_prompt": True,
        "extra": {"reasoning_effort": "high", "model_identity": "You are a careful mathematician."},
    },
    "builtin_tools": {
        "messages": [{"role": "user", "content": "Look it up."}],
        "add_generation_prompt": True,
        "extra": {"builtin_tools": ["browser", "python"]},
    },
    "tools_all_shapes": {
        "messages": [{"role": "system", "content": "Use tools."}, {"role": "user", "content": "Find red shoes."}],
        "tools": [KITCHEN_SINK, NO_PARAMS, WEATHER],
        "add_generation_prompt": True,
    },
    "tool_call_thinking_pending": {
        # the call is the last assistant turn: its thinking is shown again (the model continues from it)
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "thinking": "The user wants the weather; call get_weather.", "tool_calls": [CALL]},
            RESULT,
        ],
        "tools": [WEATHER],
        "add_generation_prompt": True,
    },
    "tool_call_thinking_answered": {
        # a final answer follows the call: the call's thinking is dropped
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "", "thinking": "Call get_weather.", "tool_calls": [CALL]},
            RESULT,
            {"role": "assistant", "content": "Sunny, 21 degrees.", "thinking": "Report it."},
            {"role": "user", "content": "Thanks! And tomorrow?"},
        ],
        "tools": [WEATHER],
        "add_generation_prompt": True,
    },
    "tool_call_content_as_analysis": {
        # content beside a call is shown as analysis (gpt-oss puts it there)
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [CALL]},
            RESULT,
        ],
        "tools": [WEATHER],
        "add_generation_prompt": True,
    },
    "previous_thinking_dropped": {
        "messages": [
            {"role": "user", "content": "What is 3*7?"},
            {"role": "assistant", "content": "21", "thinking": "3 times 7 is 21."},
            {"role": "user", "content": "And 4*5?"},
        ],
        "add_generation_prompt": True,
    },
    "training_last_turn": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris.", "thinking": "Easy: Paris."},
        ],
        "add_generation_prompt": False,
    },
    "channel_tags_in_content": {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "<|channel|>analysis<|message|>hmm<|end|>"},
            {"role": "user", "content": "Again"},
        ],
        "add_generation_prompt": True,
    },
    "content_and_thinking_with_call": {
        "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Checking.", "thinking": "Call it.", "tool_calls": [CALL]},
        ],
        "tools": [WEATHER],
        "add_generation_prompt": True,
    },
    "tool_without_call": {
        "messages": [{"role": "user", "content": "Hi"}, RESULT],
        "add_generation_prompt": True,
    },
}


def main():
    env = make_env()
    path = os.path.join(TESTDATA, "chat-templates", TEMPLATE)
    with open(path, encoding="utf-8") as f:
        template = env.from_string(f.read())
    results = []
    for name, conv in CONVERSATIONS.items():
        ctx = dict(conv.get("extra", {}))
        ctx.update(
            messages=json.loads(json.dumps(conv["messages"])),
            tools=json.loads(json.dumps(conv["tools"])) if "tools" in conv else None,
            documents=None,
            add_generation_prompt=conv["add_generation_prompt"],
            bos_token=BOS,
            eos_token=EOS,
        )
        entry = {"conversation": name}
        try:
            entry["output"] = template.render(**ctx)
        except jinja2.exceptions.TemplateError as e:
            entry["error"] = f"{type(e).__name__}: {e}"
        results.append(entry)
    doc = {
        "generator": "tests/OpenWeights.Tests/ChatTemplates/render_harmony_expected.py",
        "jinja2_version": jinja2.__version__,
        "template": TEMPLATE,
        "fixed_now": FIXED_NOW.isoformat(),
        "bos_token": BOS,
        "eos_token": EOS,
        "conversations": CONVERSATIONS,
        "results": results,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(results)} renders, {sum(1 for r in results if 'error' in r)} raise")


if __name__ == "__main__":
    main()
