"""Local stand-ins for the cloud services storyq talks to: Upstash Redis's REST API
(`upstash`, with `resp` for its wire format) and Supabase's REST API (`supabase`), each over a
real server, and OpenAI's Chat Completions (`openai`), so the unchanged official clients work
against them."""
