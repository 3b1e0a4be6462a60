// The sign-in page: a key (typed, or from the link's #key= fragment, which never reaches
// the server's logs) is exchanged for a session cookie; then the role's page opens.
'use strict';

async function signIn(key) {
  YX.show('status', YX.t('loading'));
  try {
    const r = await fetch('/session', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-Yuanxin-Signin': '1', Accept: 'application/json' },
      body: JSON.stringify({ key }),
    });
    const body = await r.json();
    if (!r.ok) throw new Error((YX.lang === 'zh' && body.title_zh) || body.title || r.status);
    location.assign(body.home);
  } catch (e) {
    YX.show('status', YX.t('signin.failed') + e.message, true);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  YX.applyTexts();
  document.getElementById('lang').addEventListener('click', () => YX.setLang(YX.lang === 'zh' ? 'en' : 'zh'));
  const form = document.getElementById('signin');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    signIn(document.getElementById('key').value.trim());
  });
  // A sign-in link opened here, or followed while this page is open.
  const fromLink = () => {
    const m = location.hash.match(/^#key=([A-Za-z0-9_]+)$/);
    if (m) {
      history.replaceState(null, '', '/signin');
      document.getElementById('key').value = m[1];
      signIn(m[1]);
    }
  };
  window.addEventListener('hashchange', fromLink);
  fromLink();
});
