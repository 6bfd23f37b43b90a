"""The simulated upstream: a real HTTP server speaking the OpenAI and Anthropic wire formats.

    async with running_sim(SimKnobs(ttft_ms=5)) as sim:
        client = openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="sk-sim")
        await sim.set_knobs(fail_rate=1.0, fail_status=429, retry_after=2)

Replies are coaching tips from a built-in corpus, reproducible from the `seed` knob and the
request content. Knobs (`SimKnobs`) are CLI flags and `POST /_sim/config`; `GET /_sim/stats`
counts requests and outcomes.

JSON answers: OpenAI `response_format: {"type": "json_schema", "json_schema": {"schema": ...}}`;
Anthropic one tool with `input_schema`, forced by `tool_choice: {"type": "tool", "name": ...}`.
A prompt line `ALLOWED_IDS: a,b,c` fills arrays named `interaction_ids` with those ids, and
`ALLOWED_DRILL_IDS: a,b` (any `ALLOWED_<NAME>_IDS`) fills `drill_ids` / `drill_id` from those.
Replies and answers keep to the domain the last user message names (music practice, voice and
public speaking, strength training; general coaching otherwise).

Tools: offered `tools` (unless `tool_choice` is "none") are called when the last user message
asks for the user's own data (progress, sessions, assessments, drills, a practice plan,
"remember ...", "change my focus ..."), streamed as each vendor streams a call, with arguments
that fit the tool's schema (`providers.sim.tool_answer`); `invalid_json_rate` cuts them short.
A request that ends with a tool's result is answered in text that quotes it.
"""

from providers.sim.knobs import KnobError, SimKnobs
from providers.sim.runner import RunningSim, run, running_sim
from providers.sim.schema_answer import allowed_ids, answer_for_schema, broken_answer, named_ids
from providers.sim.schema_check import schema_errors
from providers.sim.server import create_sim_app
from providers.sim.state import SimState

__all__ = [
    "KnobError",
    "RunningSim",
    "SimKnobs",
    "SimState",
    "allowed_ids",
    "answer_for_schema",
    "broken_answer",
    "create_sim_app",
    "named_ids",
    "run",
    "running_sim",
    "schema_errors",
]
