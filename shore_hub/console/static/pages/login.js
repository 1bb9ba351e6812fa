// Sign in with an API key (`seawatch hub keys create --role ...`); it is exchanged for a
// one-hour token at once and not kept.

import { errorBox, h, replace } from '../dom.js';

export function render(root, { signIn, message }) {
  const key = h('input', {
    id: 'api-key',
    name: 'api-key',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
  });
  const problem = h('div', { 'aria-live': 'polite' }, message ? h('p', { class: 'note' }, message) : null);
  const button = h('button', { type: 'submit' }, 'Sign in');
  const form = h(
    'form',
    {
      class: 'login',
      onsubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        replace(problem);
        try {
          await signIn(key.value.trim());
        } catch (err) {
          replace(problem, errorBox(err));
          button.disabled = false;
          key.select();
        }
      },
    },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'api-key' }, 'API key'),
    key,
    h('p', { class: 'muted' }, 'The key is exchanged for a session token; the console does not keep it.'),
    problem,
    button,
  );
  replace(root, form);
  key.focus();
}
