// Deployment settings for the storyq page, read once at start-up. The committed file sets
// nothing, so the page talks to the API on its own origin and signs in with a pasted token.
// A static host may replace this file (see README.md), e.g.:
//
// window.STORYQ_CONFIG = {
//   apiBaseUrl: 'https://abc123.execute-api.eu-central-1.amazonaws.com', // '' = same origin
//   supabaseUrl: 'https://YOUR-PROJECT.supabase.co',   // enables email/password sign-in
//   supabaseAnonKey: 'eyJ...',                          // the project's anon (public) key
//   supabaseScript: 'vendor/supabase.js',               // supabase-js's UMD build (the default:
//                                                       // beside the page, see README.md)
//   realtime: true,                                     // wake job watchers by Supabase Realtime
//   pollMinMs: 2000, pollMaxMs: 15000,                  // bounds of the job poll interval
//                                                       // (unset pollMaxMs: the API decides)
// };
window.STORYQ_CONFIG = window.STORYQ_CONFIG || {};
