import { useCallback, useEffect, useState } from 'preact/hooks';
import { ApiError, getJson } from './api';

export interface Loaded<T> {
  /** The last answer (of an earlier path while `loading`). */
  data: T | null;
  error: ApiError | null;
  /** True from the render that changes the path until its answer is in. */
  loading: boolean;
  reload: () => void;
}

function asApiError(error: unknown): ApiError {
  return error instanceof ApiError ? error : new ApiError(0, 'client_error', error instanceof Error ? error.message : String(error));
}

interface State<T> {
  data: T | null;
  error: ApiError | null;
  /** The path and reload count the answer is of. */
  of: string | null;
}

/** GETs `path` (nothing when null) and again whenever it changes or `reload` is called. */
export function useGet<T>(path: string | null): Loaded<T> {
  const [state, setState] = useState<State<T>>({ data: null, error: null, of: null });
  const [tick, setTick] = useState(0);
  const wanted = path === null ? null : `${tick} ${path}`;
  useEffect(() => {
    if (path === null) {
      setState({ data: null, error: null, of: null });
      return;
    }
    let live = true;
    getJson<T>(path).then(
      (data) => live && setState({ data, error: null, of: wanted }),
      (error: unknown) => live && setState({ data: null, error: asApiError(error), of: wanted }),
    );
    return () => {
      live = false;
    };
  }, [wanted]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data: state.data, error: state.error, loading: wanted !== null && state.of !== wanted, reload };
}

export { asApiError };
