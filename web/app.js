// @ts-check
/**
 * The storyq page: sign in, write a prompt, Generate, watch the queue, read the story; for
 * admins, the operator page (`#admin`: the queue, the job browser, a job's page, actions).
 *
 * Everything it knows about the API goes through storyq-client.js. State that must survive a
 * reload lives in localStorage: the pasted token (token sign-in only) and, per user, the jobs
 * this browser is watching and the prompts typed here (to name untitled jobs). After a reload
 * the page resumes watching those and every job the API lists as pending or processing.
 *
 * This entry module only wires the parts together and starts; README.md lists which module
 * owns what. Those modules import each other's functions in cycles, which works only while
 * none of them uses an import as it loads (an import may not be initialised yet): keep their
 * top level to constants and functions. state.js, which imports nothing, is the exception.
 */

import { bindAccount, fail, startSession } from './account.js';
import { bindAdmin } from './admin.js';
import { bindGenerateForm } from './generate-form.js';
import { bindJobList } from './job-list.js';
import { bindReader } from './reader.js';

async function main() {
  bindAccount();
  bindGenerateForm();
  bindJobList();
  bindReader();
  bindAdmin();
  await startSession();
  document.documentElement.dataset.ready = 'true';
}

main().catch(fail);
